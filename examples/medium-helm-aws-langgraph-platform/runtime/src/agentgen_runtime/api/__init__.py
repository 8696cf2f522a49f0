"""The LangGraph Platform HTTP API for the `langgraph-sdk` client, one router per resource:
meta (`/info`), assistants (with their drawing, schemas and subgraphs), threads (with their state
and history) and runs (on a thread and stateless: wait, stream, create, get, join, cancel, batch),
with interrupts resumed by `command`, the thread-centric streaming protocol (`threads.stream`),
crons (schedules of runs) and the store (each identity's own items).

Routers parse and answer; they run no SQL. Threads and the runs on them are reached through the
scoped data layer (`ownership.py`): a thread belongs to the identity that created it, others get
404."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from . import assistants, crons, meta, protocol, runs, store, threads
from .deps import plain_parameters

# langgraph.json http.disable_<name> switches these routers off (runs: with crons, as the Platform)
ROUTERS = (("meta", meta.router), ("assistants", assistants.router), ("threads", threads.router),
           ("threads", protocol.router),
           ("runs", crons.router), ("runs", runs.router), ("store", store.router))


def build_router(authenticate: Any, disabled: frozenset[str] = frozenset()) -> APIRouter:
    """The API routes but the `disabled` ones; `authenticate` is the dependency that checks the key
    and the rate limit."""
    router = APIRouter(dependencies=[Depends(plain_parameters), Depends(authenticate)])
    for name, part in ROUTERS:
        if name not in disabled:
            router.include_router(part)
    return router
