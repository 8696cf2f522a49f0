"""Threads: create, get, update, copy, delete, search, count, prune, a thread's state and history
(read through the graph its runs use, at a checkpoint of that thread only), and its stream (the
events of every run on it and its state updates, from any replica)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse

from ..models import (
    HistoryQuery,
    StateUpdate,
    ThreadCount,
    ThreadCreate,
    ThreadPrune,
    ThreadSearch,
    ThreadUpdate,
)
from ..ownership import Scope, checkpoint_config
from ..service import Service
from ..streaming.stream import THREAD_MODES, parse_modes, parse_thread_event_id
from .deps import Caller, Svc, sse
from .follow import follow_thread

router = APIRouter(tags=["threads"])


@router.post("/threads")
async def create_thread(body: ThreadCreate, svc: Svc, caller: Caller) -> dict[str, Any]:
    thread_id = body.thread_id or str(uuid.uuid4())
    value = {"thread_id": thread_id, "metadata": body.metadata, "if_exists": body.if_exists,
             "ttl": body.ttl.model_dump() if body.ttl else None}
    scope = await caller.authorize("threads", "create", value)
    body = body.model_copy(update={"metadata": value.get("metadata") or {}})
    row = await svc.create_thread(scope, thread_id, body)
    return svc.thread_json(row, kind="written")


@router.post("/threads/search")
async def search_threads(body: ThreadSearch, svc: Svc, caller: Caller) -> list[dict[str, Any]]:
    scope = await caller.authorize("threads", "search", {
        "metadata": body.metadata, "values": body.values, "status": body.status,
        "limit": body.limit, "offset": body.offset})
    found = await svc.threads_matching(scope, body, limit=body.limit, offset=body.offset)
    return [svc.thread_found(row, state, body) for row, state in found]


@router.post("/threads/count")
async def count_threads(body: ThreadCount, svc: Svc, caller: Caller) -> int:
    scope = await caller.authorize("threads", "search", {
        "metadata": body.metadata, "values": body.values, "status": body.status, "limit": 0,
        "offset": 0})
    return await svc.count_threads(scope, body)


@router.post("/threads/prune")
async def prune_threads(body: ThreadPrune, svc: Svc, caller: Caller) -> dict[str, int]:
    scope = await caller.authorize("threads", "delete", {"thread_ids": body.thread_ids})
    count = await svc.threads.prune(scope, body.thread_ids, body.strategy == "keep_latest")
    return {"pruned_count": count}


@router.get("/threads/{thread_id}")
async def get_thread(thread_id: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    scope = await caller.authorize("threads", "read", {"thread_id": thread_id})
    row = await svc.threads.get(scope, thread_id)
    return svc.thread_json(row, await svc.state(thread_id, row["metadata"].get("graph_id")))


@router.patch("/threads/{thread_id}")
async def update_thread(thread_id: str, body: ThreadUpdate, svc: Svc, caller: Caller,
                        request: Request) -> Any:
    value = {"thread_id": thread_id, "metadata": body.metadata}
    scope = await caller.authorize("threads", "update", value)
    row = await svc.threads.update(scope, thread_id, value.get("metadata") or {},
                                   body.ttl.model_dump() if body.ttl else None)
    if request.headers.get("prefer", "").strip().lower() == "return=minimal":
        return Response(status_code=204)
    return svc.thread_json(row, await svc.state(thread_id, row["metadata"].get("graph_id")),
                           kind="written")


@router.post("/threads/{thread_id}/copy")
async def copy_thread(thread_id: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    scope = await caller.authorize("threads", "read", {"thread_id": thread_id})
    new_id = str(uuid.uuid4())
    created = {"thread_id": new_id, "metadata": {}}  # what the create handler stamps, the copy gets
    await caller.authorize("threads", "create", created)
    row = await svc.threads.copy(scope, thread_id, new_id, created.get("metadata") or {})
    return svc.thread_json(row, kind="copied")


@router.delete("/threads/{thread_id}", status_code=204)
async def delete_thread(thread_id: str, svc: Svc, caller: Caller) -> Response:
    scope = await caller.authorize("threads", "delete", {"thread_id": thread_id})
    await svc.threads.delete(scope, thread_id)
    return Response(status_code=204)


@router.get("/threads/{thread_id}/state")
@router.get("/threads/{thread_id}/state/{checkpoint_id}")
async def get_state(
    thread_id: str, svc: Svc, caller: Caller, checkpoint_id: str | None = None
) -> dict[str, Any]:
    scope = await caller.authorize("threads", "read", {"thread_id": thread_id})
    graph_id = await svc.threads.graph_id(scope, thread_id)
    return Service.state_json(await svc.state(thread_id, graph_id, checkpoint_id))


@router.post("/threads/{thread_id}/state")
async def update_state(
    thread_id: str, body: StateUpdate, svc: Svc, caller: Caller
) -> dict[str, Any]:
    scope = await caller.authorize("threads", "update", {"thread_id": thread_id})
    graph = svc.graph_of(await svc.threads.graph_id(scope, thread_id))
    config = checkpoint_config(
        thread_id,
        {
            **(body.checkpoint or {}),
            **({"checkpoint_id": body.checkpoint_id} if body.checkpoint_id else {}),
        },
    )
    new_config = await graph.aupdate_state(config, body.values, as_node=body.as_node)
    await svc.engine.state_updated(thread_id)  # the thread streams following it, on any replica
    written = new_config["configurable"]
    return {"checkpoint": written, "configurable": written,
            "checkpoint_id": written.get("checkpoint_id")}


async def _history(svc: Service, caller: Scope, thread_id: str, query: HistoryQuery) -> list[dict]:
    scope = await caller.authorize("threads", "read", {"thread_id": thread_id})
    graph = svc.graph_of(await svc.threads.graph_id(scope, thread_id))
    config = checkpoint_config(thread_id, query.checkpoint)
    before = (
        checkpoint_config(
            thread_id,
            query.before if isinstance(query.before, dict) else {"checkpoint_id": query.before},
        )
        if query.before
        else None
    )
    return [
        Service.state_json(state)
        async for state in graph.aget_state_history(
            config, limit=query.limit, before=before, filter=query.metadata
        )
    ]


@router.post("/threads/{thread_id}/history")
async def post_history(thread_id: str, body: HistoryQuery, svc: Svc, caller: Caller) -> list[dict]:
    return await _history(svc, caller, thread_id, body)


@router.get("/threads/{thread_id}/history")
async def get_history(
    thread_id: str, svc: Svc, caller: Caller, limit: int = Query(10, ge=1, le=1000)
) -> list[dict]:
    return await _history(svc, caller, thread_id, HistoryQuery(limit=limit))


@router.get("/threads/{thread_id}/stream")
async def join_thread_stream(
    thread_id: str,
    svc: Svc,
    caller: Caller,
    stream_mode: Annotated[list[str] | None, Query()] = None,  # as the SDK sends it
    stream_modes: str | None = None,  # as langgraph-api reads it (comma-separated)
    last_event_id: str | None = Header(None),
) -> StreamingResponse:
    try:
        modes = parse_modes([*(stream_mode or []), stream_modes], THREAD_MODES) or {"run_modes"}
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    scope = await caller.authorize("threads", "read", {"thread_id": thread_id})
    await svc.threads.get(scope, thread_id)  # 404 before the stream starts
    events = follow_thread(svc, scope, thread_id, modes, parse_thread_event_id(last_event_id))

    async def body() -> AsyncIterator[bytes]:
        async for event_id, event, data in events:
            yield sse(event, data, event_id) if event else b": keepalive\n\n"

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
