"""Runs: on a thread (created on the caller's thread only) and stateless; wait, stream, create,
batch, list, get, delete, join, join the stream (from any replica, after Last-Event-ID), cancel."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Response
from fastapi.responses import JSONResponse, StreamingResponse
from langgraph.types import Command

from ..auth.handlers import stamp_user
from ..engine.runs import IdempotencyConflict, RunRejected, RunReleased, ThreadNotFound
from ..errors import dependency_failure
from ..models import MAX_OFFSET, CancelMany, RunCreate
from ..ownership import Scope, checkpoint_config, thread_not_found
from ..service import Service, UnknownInterruptError, refuse_unknown_resume, with_assistant
from ..streaming.stream import RUN_MODES, parse_modes, run_event_wanted
from .deps import Caller, Headers, IdempotencyKey, Svc, sse

KEEPALIVE_SECONDS = 10.0
WAIT_RETRY_SECONDS = 1.0  # a waiting client's read of its run's outcome, retried during an outage
MAX_BATCH = 100

router = APIRouter(tags=["runs"])


async def new_run(
    svc: Service, caller: Scope, body: RunCreate, thread_id: str | None, record_events: bool,
    headers: dict[str, str], idempotency_key: str | None = None, route: str = "create",
) -> dict[str, Any]:
    """Create the run (a row, claimed here when this process has capacity) on the caller's thread
    (created first with if_not_exists=create), or stateless. With an Idempotency-Key: the run the
    same request (`route`, thread and body) created under that key within the window, marked
    `replayed` (422 when the key went with another request). A resume that answers no waiting
    interrupt is a 409 (settings.strict_resume), unless the client asked for `strict_resume`
    itself: then the run fails as on the Platform (UnknownInterruptError)."""
    run_id = str(uuid.uuid4())
    idempotency = None
    if idempotency_key is not None:
        idempotency = (idempotency_key, request_hash(route, thread_id, body))
    scope = caller
    if caller.handlers is not None:  # custom auth: threads.create_run, as on the Platform
        value = {"thread_id": thread_id, "assistant_id": body.assistant_id, "run_id": run_id,
                 "status": "pending", "metadata": body.metadata,
                 "prevent_insert_if_inflight": body.multitask_strategy == "reject",
                 "multitask_strategy": body.multitask_strategy,
                 "if_not_exists": body.if_not_exists, "after_seconds": body.after_seconds,
                 "kwargs": body.model_dump(mode="json", exclude_none=True)}
        scope = await caller.authorize("threads", "create_run", value)
        body = body.model_copy(update={"metadata": value.get("metadata") or {}})
        if svc.system_graph(body.assistant_id) is None:  # (a graph's own assistant: anyone's)
            caller = await caller.authorize("assistants", "read", {"assistant_id": body.assistant_id})
    graph, assistant = await svc.assistant(caller, body.assistant_id)
    if thread_id is None and body.command is not None:
        raise HTTPException(422, "a command (resume) needs a thread: use /threads/{id}/runs")
    body = with_assistant(body, assistant)
    await svc.check_webhook(body.webhook)
    if thread_id is not None and body.command is not None and body.command.resume is not None \
            and svc.settings.strict_resume and not body.strict_resume \
            and not (idempotency and await svc.engine.keyed(scope.owner, idempotency[0])):
        await _refuse_late_resume(svc, scope, thread_id, body)
    kwargs = body.model_dump(mode="json", exclude_none=True)
    if headers:  # langgraph.json http.configurable_headers, over the client's values
        config = kwargs.setdefault("config", {})
        config["configurable"] = {**(config.get("configurable") or {}), **headers}
    kwargs["config"] = stamp_user(kwargs.get("config"), scope.user)
    try:
        row = await svc.engine.create(
            run_id=run_id,
            thread_id=thread_id,
            graph_id=graph.graph_id,
            assistant_id=assistant["assistant_id"],
            kwargs=kwargs,
            metadata=body.metadata,
            strategy=body.multitask_strategy,
            record_events=record_events,
            owner=scope.owner,
            create_thread=body.if_not_exists == "create",
            thread_filter=scope.filter,
            idempotency=idempotency,
            webhook_policy=svc.webhooks.fingerprint if body.webhook else None,
        )
    except RunRejected as exc:
        raise HTTPException(409, str(exc)) from None
    except IdempotencyConflict as exc:
        raise HTTPException(422, f"Idempotency-Key: {exc}") from None
    except ThreadNotFound:
        raise thread_not_found(str(thread_id)) from None
    return row if row["run_id"] == run_id else {**row, "replayed": True}


def request_hash(route: str, thread_id: str | None, body: RunCreate) -> str:
    """What makes two run creations the same request: the route, the thread and the body as the
    client sent it (fields it left out stay out)."""
    sent = body.model_dump(mode="json", exclude_unset=True)
    canonical = json.dumps([route, thread_id, sent], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _refuse_late_resume(svc: Service, scope: Scope, thread_id: str, body: RunCreate) -> None:
    """409 when the resume answers no interrupt waiting on the caller's thread (404 when the
    thread is not the caller's): the value it carries is never dropped silently. A run in
    progress on the thread may still stop at the interrupt: then the engine's own 409 (AGR02)."""
    try:
        graph_id = await svc.threads.graph_id(scope, thread_id)
    except HTTPException:
        if body.if_not_exists == "create":
            raise HTTPException(409, f"thread {thread_id} has no interrupt waiting for a resume "
                                     "(it does not exist yet)") from None
        raise
    try:
        await refuse_unknown_resume(svc.graph_of(graph_id), checkpoint_config(thread_id, None),
                                    Command(resume=body.command.resume))
    except UnknownInterruptError as exc:
        if await svc.threads.active_runs(scope, thread_id, None, None):
            return  # (its run may be about to stop there: the engine answers)
        raise HTTPException(409, f"thread {thread_id}: {exc}: the resume was not applied (it was "
                                 "answered already, or never asked for)") from None


def _path(row: dict[str, Any]) -> str:
    if row["thread_id"] is None:
        return f"/runs/{row['run_id']}"
    return f"/threads/{row['thread_id']}/runs/{row['run_id']}"


async def _wait(
    svc: Service, caller: Scope, body: RunCreate, thread_id: str | None, headers: dict[str, str],
    key: str | None = None,
) -> StreamingResponse:
    """The final values, sent when the run ends; the headers go at once, with `Location` (the
    run's join): a client whose connection drops (this process died) joins it there."""
    row = await new_run(svc, caller, body, thread_id, False, headers, key, "wait")
    run_id = row["run_id"]

    async def body_when_done() -> AsyncIterator[bytes]:
        # Never a complete body without the outcome: while the database is unavailable the
        # wait is retried (keepalives go on); RunReleased (this process is shutting down) and
        # anything else propagate, the connection drops without a complete body (see
        # ErrorMiddleware) and the client joins the run at Location elsewhere.
        waiting = asyncio.ensure_future(svc.engine.wait(run_id))
        try:
            while True:
                if not (await asyncio.wait({waiting}, timeout=KEEPALIVE_SECONDS))[0]:
                    yield b"\n"  # JSON allows leading whitespace; proxies see a live response
                    continue
                exc = waiting.exception()
                if exc is not None and dependency_failure(exc) is not None:
                    await asyncio.sleep(WAIT_RETRY_SECONDS)
                    waiting = asyncio.ensure_future(svc.engine.wait(run_id))
                    continue
                yield json.dumps(Service.outcome(waiting.result()), separators=(",", ":")).encode()
                return
        finally:
            waiting.cancel()

    headers = {"Content-Location": _path(row), **replayed(row)}
    if thread_id is not None:
        headers["Location"] = f"{_path(row)}/join"
    return StreamingResponse(body_when_done(), media_type="application/json", headers=headers)


def replayed(row: dict[str, Any]) -> dict[str, str]:
    """The answer's header saying it is the first request's (a retry with its Idempotency-Key)."""
    return {"Idempotent-Replayed": "true"} if row.get("replayed") else {}


def _events(
    svc: Service, row: dict[str, Any], after: int, cancel_on_disconnect: bool, location: str | None,
    modes: set[str] | frozenset[str] = frozenset(),
) -> StreamingResponse:
    """The run's events after `after` (those of `modes` when given) as server-sent events."""
    run_id = row["run_id"]

    async def events() -> AsyncIterator[bytes]:
        finished = False
        try:
            async for seq, event, data in svc.engine.events(run_id, after):
                if run_event_wanted(modes, event):
                    yield sse(event, data, seq)
            finished = True
        finally:
            if not finished and cancel_on_disconnect:
                with contextlib.suppress(Exception):
                    await asyncio.shield(svc.engine.cancel([run_id], "interrupt"))

    headers = {
        "Cache-Control": "no-store",
        "X-Accel-Buffering": "no",
        "Content-Location": _path(row),
    }
    if location:
        headers["Location"] = location
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


async def _stream(
    svc: Service, caller: Scope, body: RunCreate, thread_id: str | None, headers: dict[str, str],
    key: str | None = None,
) -> StreamingResponse:
    row = await new_run(svc, caller, body, thread_id, True, headers, key, "stream")
    location = f"{_path(row)}/stream" if thread_id is not None else None
    response = _events(svc, row, 0, body.on_disconnect == "cancel", location)
    response.headers.update(replayed(row))
    return response


@router.post("/threads/{thread_id}/runs/wait")
async def wait_on_thread(
    thread_id: str, body: RunCreate, svc: Svc, caller: Caller, headers: Headers, key: IdempotencyKey
) -> StreamingResponse:
    return await _wait(svc, caller, body, thread_id, headers, key)


@router.post("/runs/wait")
async def wait_stateless(body: RunCreate, svc: Svc, caller: Caller,
                         headers: Headers, key: IdempotencyKey) -> StreamingResponse:
    return await _wait(svc, caller, body, None, headers, key)


@router.post("/threads/{thread_id}/runs/stream")
async def stream_on_thread(
    thread_id: str, body: RunCreate, svc: Svc, caller: Caller, headers: Headers, key: IdempotencyKey
) -> StreamingResponse:
    return await _stream(svc, caller, body, thread_id, headers, key)


@router.post("/runs/stream")
async def stream_stateless(body: RunCreate, svc: Svc, caller: Caller,
                           headers: Headers, key: IdempotencyKey) -> StreamingResponse:
    return await _stream(svc, caller, body, None, headers, key)


@router.post("/threads/{thread_id}/runs")
async def create_run(thread_id: str, body: RunCreate, svc: Svc, caller: Caller,
                     headers: Headers, key: IdempotencyKey, response: Response) -> dict[str, Any]:
    row = await new_run(svc, caller, body, thread_id, True, headers, key)
    response.headers.update(replayed(row))
    return Service.run_json(row)


@router.post("/runs")
async def create_stateless_run(body: RunCreate, svc: Svc, caller: Caller, headers: Headers,
                               key: IdempotencyKey, response: Response) -> dict[str, Any]:
    row = await new_run(svc, caller, body, None, True, headers, key)
    response.headers.update(replayed(row))
    return Service.run_json(row)


@router.post("/runs/batch")
async def create_batch(bodies: list[RunCreate], svc: Svc, caller: Caller, headers: Headers,
                       key: IdempotencyKey, response: Response) -> list[dict[str, Any]]:
    """With an Idempotency-Key, the batch's i-th run is keyed `<key>#<i>`: a retried batch
    creates the runs its first attempt did not."""
    if len(bodies) > MAX_BATCH:
        raise HTTPException(422, f"at most {MAX_BATCH} runs per batch")
    for body in bodies:  # all or none: a refused webhook before any run is created
        await svc.check_webhook(body.webhook)
    rows = [await new_run(svc, caller, body, None, True, headers,
                          None if key is None else f"{key}#{i}", "batch")
            for i, body in enumerate(bodies)]
    if rows and all(row.get("replayed") for row in rows):
        response.headers.update(replayed(rows[0]))
    return [Service.run_json(row) for row in rows]


@router.get("/threads/{thread_id}/runs")
async def list_runs(
    thread_id: str,
    svc: Svc,
    caller: Caller,
    limit: int = Query(10, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    status: str | None = None,
) -> list[dict[str, Any]]:
    scope = await caller.authorize("threads", "search", {"thread_id": thread_id, "metadata": {}})
    rows = await svc.threads.runs(scope, thread_id, status, limit, offset)
    return [Service.run_json(row) for row in rows]


@router.get("/threads/{thread_id}/runs/{run_id}")
async def get_run(thread_id: str, run_id: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    scope = await caller.authorize("threads", "read", {"thread_id": thread_id})
    return Service.run_json(await svc.threads.run(scope, thread_id, run_id))


@router.delete("/threads/{thread_id}/runs/{run_id}", status_code=204)
async def delete_run(thread_id: str, run_id: str, svc: Svc, caller: Caller) -> Response:
    scope = await caller.authorize("threads", "delete", {"thread_id": thread_id, "run_id": run_id})
    await svc.threads.delete_run(scope, thread_id, run_id)
    return Response(status_code=204)


@router.get("/threads/{thread_id}/runs/{run_id}/join")
async def join_run(thread_id: str, run_id: str, svc: Svc, caller: Caller) -> Any:
    scope = await caller.authorize("threads", "read", {"thread_id": thread_id})
    await svc.threads.run(scope, thread_id, run_id)
    try:
        return Service.outcome(await svc.engine.wait(run_id))
    except RunReleased:
        raise HTTPException(503, "this replica is shutting down; join again") from None


@router.get("/threads/{thread_id}/runs/{run_id}/stream")
async def join_stream(
    thread_id: str,
    run_id: str,
    svc: Svc,
    caller: Caller,
    cancel_on_disconnect: bool = False,
    stream_mode: Annotated[list[str] | None, Query()] = None,  # the run's modes to send (all)
    last_event_id: str = Header("0"),
) -> StreamingResponse:
    try:
        modes = parse_modes(stream_mode or [], RUN_MODES)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    scope = await caller.authorize("threads", "read", {"thread_id": thread_id})
    row = await svc.threads.run(scope, thread_id, run_id)
    after = int(last_event_id) if last_event_id.isdigit() else 0
    return _events(svc, row, after, cancel_on_disconnect, f"{_path(row)}/stream", modes)


@router.post("/threads/{thread_id}/runs/{run_id}/cancel", status_code=202)
async def cancel_run(
    thread_id: str,
    run_id: str,
    svc: Svc,
    caller: Caller,
    wait: bool = False,
    action: Literal["interrupt", "rollback"] = "interrupt",
) -> Response:
    scope = await caller.authorize("threads", "update", {
        "thread_id": thread_id, "action": action, "metadata": {"run_ids": [run_id], "status": None}})
    await svc.threads.run(scope, thread_id, run_id)
    await svc.engine.cancel([run_id], action)
    if not wait:
        return Response(status_code=202)
    # as the Platform does: the run's outcome once it has stopped, as join answers it
    try:
        outcome = Service.outcome(await svc.engine.wait(run_id))
        if outcome is None:  # stopped before it wrote any values
            outcome = {}
    except RunReleased:
        raise HTTPException(503, "this replica is shutting down; join the run") from None
    path = f"/threads/{thread_id}/runs/{run_id}"
    return JSONResponse(outcome, headers={"Location": f"{path}/join", "Content-Location": path})


@router.post("/runs/cancel", status_code=204)
async def cancel_many(
    body: CancelMany,
    svc: Svc,
    caller: Caller,
    action: Literal["interrupt", "rollback"] = "interrupt",
) -> Response:
    scope = await caller.authorize("threads", "update", {
        "thread_id": body.thread_id, "action": action,
        "metadata": {"run_ids": body.run_ids, "status": body.status}})
    if body.thread_id is not None:
        await svc.threads.graph_id(scope, body.thread_id)  # 404 unless it is the caller's
    await svc.engine.cancel(
        await svc.threads.active_runs(scope, body.thread_id, body.run_ids, body.status), action
    )
    return Response(status_code=204)
