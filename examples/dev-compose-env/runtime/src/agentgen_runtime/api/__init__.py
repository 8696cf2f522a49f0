"""The LangGraph Platform HTTP API for the `langgraph-sdk` client, one router per resource:
meta (`/info`), assistants (with their drawing, schemas and subgraphs), threads (with their state
and history) and runs (on a thread and stateless: wait, stream, create, get, join, cancel, batch),
with interrupts resumed by `command`, crons (schedules of runs) and the store (each identity's
own items).

Routers parse and answer; they run no SQL. Threads and the runs on them are reached through the
scoped data layer (`ownership.py`): a thread belongs to the identity that created it, others get
404."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from . import assistants, crons, meta, runs, store, threads
from .deps import plain_parameters


def build_router(authenticate: Any) -> APIRouter:
    """The API routes; `authenticate` is the dependency that checks the key and the rate limit."""
    router = APIRouter(dependencies=[Depends(plain_parameters), Depends(authenticate)])
    for part in (meta.router, assistants.router, threads.router, crons.router, runs.router,
                 store.router):
        router.include_router(part)
    return router
