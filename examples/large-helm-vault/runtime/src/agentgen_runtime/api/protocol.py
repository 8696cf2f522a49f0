"""The thread-centric streaming protocol (`client.threads.stream(...)` in langgraph-sdk 0.4):
`POST /threads/{id}/commands` (one command in, its answer out: `run.start`, `input.respond`, and
the subscription commands the HTTP transport answers statelessly), `POST
/threads/{id}/stream/events` (the thread's protocol events, filtered by the body) and the WebSocket
on that path (commands in, answers and the events its subscriptions take out). Runs are
created by the runs router's own path (same authorization, limits and strategies); events come
from the thread's followed stream (`follow_thread`), so any replica serves them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from ..models import RunCreate, parse_json
from ..ownership import Scope, thread_not_found
from ..service import Service
from ..streaming.protocol import (
    MARK,
    MULTITASK,
    Numbering,
    Refused,
    SocketSession,
    Subscription,
    envelopes,
    subscription_of,
)
from .deps import Caller, Headers, Svc, sse
from .follow import follow_thread
from .runs import new_run

router = APIRouter(tags=["threads"])
SETTLE_SECONDS = 5.0
# a socket opened before its thread exists looks for it again after 0.25 s, 0.5 s, ... 4 s (at once
# after a run.start it sent)
SOCKET_POLL_SECONDS, SOCKET_POLL_MAX_SECONDS = 0.25, 4.0
# a socket whose thread is not the caller's this long after it opened (or after its last
# run.start) is closed (1008): a socket is never kept open polling for nothing
SOCKET_WAIT_SECONDS = 60.0
COMMANDS = frozenset({"run.start", "input.respond", "agent.getTree", "subscription.subscribe",
                      "subscription.unsubscribe", "subscription.reconnect"})


async def _body(request: Request) -> Any:
    try:
        return parse_json(await request.body())
    except ValueError as exc:
        raise HTTPException(400, f"Invalid JSON body: {exc}") from None


def _malformed(payload: Any) -> dict[str, Any] | None:
    """The error envelope of a payload that is not a command, or None."""
    if isinstance(payload, dict) and isinstance(payload.get("id"), int) \
            and not isinstance(payload.get("id"), bool) and isinstance(payload.get("method"), str):
        return None
    return {"type": "error", "id": payload.get("id") if isinstance(payload, dict) else None,
            "error": "invalid_argument",
            "message": "Protocol commands must include an integer id and string method."}


async def _answer(payload: dict[str, Any], handle: Any, seq: Any = lambda: 0) -> dict[str, Any]:
    """A command's envelope: `handle(method, params)`'s result (with the `seq` the connection had
    sent when it was done), or its refusal."""
    command_id, method = payload["id"], payload["method"]
    params = payload.get("params") if isinstance(payload.get("params"), dict) else {}
    try:
        if method not in COMMANDS:
            raise Refused("unknown_command", f"Unknown protocol command: {method}")
        result = await handle(method, params)
    except Refused as exc:
        return {"type": "error", "id": command_id, "error": exc.code, "message": str(exc),
                **exc.fields}
    return {"type": "success", "id": command_id, "result": result,
            "meta": {"applied_through_seq": seq()}}


@router.post("/threads/{thread_id}/commands")
async def command(thread_id: str, request: Request, svc: Svc, caller: Caller,
                  headers: Headers) -> JSONResponse:
    payload = await _body(request)
    malformed = _malformed(payload)
    if malformed is not None:
        return JSONResponse(malformed, status_code=400)
    # each HTTP command is answered by a fresh session: it has applied nothing yet
    return JSONResponse(await _answer(payload, lambda method, params: _dispatch(
        svc, caller, thread_id, method, params, headers)))


async def _dispatch(svc: Service, caller: Scope, thread_id: str, method: str,
                    params: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    if method == "run.start":
        return await _run_start(svc, caller, thread_id, params, headers)
    if method == "input.respond":
        await _respond(svc, caller, thread_id, params, headers)
        return {}
    if method == "subscription.subscribe":  # over HTTP the filter is the event stream's body
        subscription_of(method, params)
        return {"subscription_id": str(uuid.uuid4()), "replayed_events": 0}
    if method == "subscription.unsubscribe":
        if not isinstance(params.get("subscription_id"), str):
            raise Refused("invalid_argument", "subscription.unsubscribe requires a subscription_id.")
        raise Refused("no_such_subscription", f"Unknown subscription: {params['subscription_id']}")
    # agent.getTree, subscription.reconnect: a session's, and an HTTP command has none
    raise Refused("no_such_run", "No active run is bound to this thread.")


async def _thread(svc: Service, caller: Scope, thread_id: str) -> dict[str, Any] | None:
    """The caller's thread once its run in progress has ended (waited for up to SETTLE_SECONDS:
    a client answers an interrupt as soon as it is streamed, while the run that stopped there
    is still recording it), or None when there is none of that id (another identity's
    included)."""
    scope = await caller.authorize("threads", "read", {"thread_id": thread_id})
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        try:
            thread = await svc.threads.get(scope, thread_id)
        except HTTPException as exc:
            if exc.status_code == 404:
                return None
            raise
        if thread["status"] != "busy" or time.monotonic() > deadline:
            return thread
        await asyncio.sleep(0.05)


async def _pending(svc: Service, thread: dict[str, Any] | None) -> set[str]:
    """The ids of the interrupts the thread waits on."""
    graph_id = ((thread or {}).get("metadata") or {}).get("graph_id")
    if graph_id is None:
        return set()
    state = await svc.state(thread["thread_id"], graph_id)
    return {i.id for i in state.interrupts}


async def _create_run(svc: Service, caller: Scope, thread_id: str, fields: dict[str, Any],
                      headers: dict[str, str]) -> dict[str, Any]:
    config = fields.pop("config", None)
    config = dict(config) if isinstance(config, dict) else {}
    config["configurable"] = {**(config.get("configurable") or {}), MARK: True}
    try:
        body = RunCreate.model_validate({**fields, "config": config, "stream_subgraphs": True,
                                         "if_not_exists": "create"})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise Refused("invalid_argument", f"{where}: {error['msg']}") from None
    try:
        return await new_run(svc, caller, body, thread_id, True, headers)
    except HTTPException as exc:
        if exc.detail == thread_not_found(thread_id).detail:
            raise  # another identity's thread: 404, as on every route
        # a refused run, as langgraph-api words it: its HTTP status and reason
        raise Refused("unknown_error", f"{exc.status_code}: {exc.detail}") from None


async def _run_start(svc: Service, caller: Scope, thread_id: str, params: dict[str, Any],
                     headers: dict[str, str]) -> dict[str, Any]:
    assistant_id = params.get("assistant_id")
    if not isinstance(assistant_id, str) or not assistant_id:
        raise Refused("invalid_argument", "run.start requires an assistant_id.")
    config = params.get("config") if isinstance(params.get("config"), dict) else {}
    checkpoint_id = (config.get("configurable") or {}).get("checkpoint_id") \
        if isinstance(config.get("configurable"), dict) else None
    if checkpoint_id is not None:
        try:
            uuid.UUID(str(checkpoint_id))
        except ValueError:
            raise Refused("invalid_argument",
                          f"Invalid config.configurable.checkpoint_id: {checkpoint_id!r}.") from None
    tracer = params.get("langsmith_tracer")
    # accepted as the Platform does (runs are not traced to LangSmith by this server)
    if tracer is not None and (not isinstance(tracer, dict)
                               or set(tracer) - {"project_name", "example_id"}
                               or not all(isinstance(v, str) for v in tracer.values())):
        raise Refused("invalid_argument", "langsmith_tracer must be an object with string "
                                              "project_name and example_id.")
    strategy = params.get("multitaskStrategy")
    run_input = params.get("input")
    # input for a thread waiting on an interrupt answers it (as the Platform resumes)
    resume = run_input is not None and bool(
        await _pending(svc, await _thread(svc, caller, thread_id)))
    fields: dict[str, Any] = {
        "assistant_id": assistant_id, "config": config, "metadata": params.get("metadata") or {},
        "multitask_strategy": strategy if strategy in MULTITASK else "enqueue",
        "checkpoint_id": checkpoint_id,
        **({"command": {"resume": run_input}} if resume else {"input": run_input})}
    run = await _create_run(svc, caller, thread_id, fields, headers)
    return {"run_id": run["run_id"]}


def _responses(params: dict[str, Any]) -> list[tuple[str, Any]]:
    """`input.respond`'s answers: one (`interrupt_id`, `response`) or a `responses` batch."""
    entries = params.get("responses") if isinstance(params.get("responses"), list) else [params]
    if not entries:
        raise Refused("invalid_argument", "input.respond requires at least one response.")
    answers = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("interrupt_id"), str):
            raise Refused("invalid_argument", "input.respond requires an interrupt_id.")
        namespace = entry.get("namespace", [])
        if not isinstance(namespace, list) or not all(isinstance(s, str) for s in namespace):
            raise Refused("invalid_argument",
                          "input.respond requires namespace to be a list of strings.")
        answers.append((entry["interrupt_id"], entry.get("response")))
    return answers


async def _respond(svc: Service, caller: Scope, thread_id: str, params: dict[str, Any],
                   headers: dict[str, str]) -> None:
    answers = _responses(params)
    thread = await _thread(svc, caller, thread_id)
    if thread is None:
        raise thread_not_found(thread_id)
    pending = await _pending(svc, thread)
    for interrupt_id, _ in answers:
        if interrupt_id not in pending:
            raise Refused("no_such_interrupt", f"Unknown or already-consumed interrupt: {interrupt_id}")
    assistant_id = (thread.get("metadata") or {}).get("assistant_id")
    if not assistant_id:
        raise Refused("no_such_run", "No interrupted run is bound to this thread.")
    command = {"resume": dict(answers),
               **{k: params[k] for k in ("update", "goto") if params.get(k) is not None}}
    # strict_resume (the JavaScript client's strictResume): the run itself refuses an answer to
    # no waiting interrupt, whatever happened since the check above
    await _create_run(svc, caller, thread_id, {
        "assistant_id": assistant_id, "command": command, "config": params.get("config"),
        "metadata": params.get("metadata") or {},
        "strict_resume": params.get("strict_resume") is True}, headers)


@router.post("/threads/{thread_id}/stream/events")
async def stream_events(thread_id: str, request: Request, svc: Svc,
                        caller: Caller) -> StreamingResponse:
    try:
        subscription = Subscription.parse(await _body(request))
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    scope = await caller.authorize("threads", "read", {"thread_id": thread_id})
    # 404 before the stream starts (for a thread a run.start is about to create too: the SDK
    # opens its stream again after run.start)
    await svc.threads.get(scope, thread_id)
    followed = follow_thread(svc, scope, thread_id, {"run_modes"}, (1, 0))

    async def body() -> AsyncIterator[bytes]:
        async for event in envelopes(followed, _run_of(svc, scope, thread_id), subscription):
            if event is None:
                yield b": keepalive\n\n"
                continue
            yield sse(event["method"], event, event["seq"])

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


class _Close(Exception):
    """Ends a WebSocket: an error frame, then the close code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


async def _anothers(svc: Service, scope: Scope, thread_id: str) -> bool:
    """Whether the thread exists and is not the caller's (a subscription to it is refused)."""
    try:
        await svc.threads.get(scope, thread_id)
        return False
    except HTTPException:
        return await svc.threads.exists(thread_id)


def _run_of(svc: Service, scope: Scope, thread_id: str) -> Any:
    async def run_of(run_id: str) -> dict[str, Any] | None:
        try:
            return await svc.threads.run(scope, thread_id, run_id)
        except HTTPException:
            return None

    return run_of


@router.websocket("/threads/{thread_id}/stream/events")
async def stream_socket(thread_id: str, websocket: WebSocket, svc: Svc, caller: Caller,
                        headers: Headers) -> None:
    """The protocol's full-duplex transport: every frame in is a command (`run.start`,
    `input.respond`, `subscription.subscribe`/`unsubscribe`/`reconnect`, `agent.getTree`), answered
    in a frame; the events the connection's subscriptions take follow as frames. The thread is
    followed once it is the caller's (a `run.start` may create it); the socket is closed (1011)
    when the thread is deleted."""
    scope = await caller.authorize("threads", "read", {"thread_id": thread_id})
    await websocket.accept()
    sending = asyncio.Lock()

    async def send(message: dict[str, Any]) -> None:
        async with sending:
            await websocket.send_text(json.dumps(message, separators=(",", ":")))

    numbering = Numbering(_run_of(svc, scope, thread_id))
    session = SocketSession(numbering, send)

    started = asyncio.Event()  # a run.start on this socket: its thread exists now

    async def pump() -> None:
        wait = SOCKET_POLL_SECONDS
        deadline = time.monotonic() + SOCKET_WAIT_SECONDS
        while True:  # until the thread is the caller's (created later; another's: never)
            try:
                await svc.threads.get(scope, thread_id)
                break
            except HTTPException:
                if time.monotonic() > deadline:  # nobody created it: the socket is not kept
                    with contextlib.suppress(Exception):
                        await websocket.close(code=1008, reason=f"thread {thread_id} not found")
                    return
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(started.wait(), wait):
                        deadline = time.monotonic() + SOCKET_WAIT_SECONDS
                started.clear()
                wait = min(wait * 2, SOCKET_POLL_MAX_SECONDS)
        reason = "thread stream ended"  # the thread was deleted
        try:
            followed = follow_thread(svc, scope, thread_id, {"run_modes"}, (1, 0))
            async for event in numbering.events(followed):
                if event is not None:
                    await session.deliver(event)
        except Exception as exc:  # noqa: BLE001 - the database: the client reconnects
            reason = f"thread stream failed: {type(exc).__name__}"
        with contextlib.suppress(Exception):
            await websocket.close(code=1011, reason=reason)

    async def handle(method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method in ("run.start", "input.respond"):
            try:
                result = await _dispatch(svc, caller, thread_id, method, params, headers)
                started.set()
                return result
            except HTTPException as exc:  # another identity's thread, a limit
                raise Refused("unknown_error", f"{exc.status_code}: {exc.detail}") from None
        if method.startswith("subscription.") and await _anothers(svc, scope, thread_id):
            raise _Close(1008, f"thread {thread_id} not found")  # (as a 404 would say it)
        return await session.command(method, params)

    follower = asyncio.create_task(pump())
    limit = svc.settings.max_request_bytes
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            raw = message.get("text")
            refusal = None
            if raw is None:
                refusal = (1003, "Protocol commands are text frames (JSON), not binary.")
            elif len(raw) > limit // 4 and len(raw.encode()) > limit:
                refusal = (1009, f"A command is at most {limit} bytes (MAX_REQUEST_BYTES).")
            else:
                try:
                    payload = parse_json(raw, "command")
                except ValueError as exc:
                    if "not valid JSON" not in str(exc):  # (too deep, NaN, NUL: not a mistake)
                        refusal = (1007, f"Protocol commands must be plain JSON: {exc}.")
                    else:  # a malformed frame is answered and the connection kept, as langgraph-api does
                        await send({"type": "error", "id": None, "error": "invalid_argument",
                                    "message": "Protocol commands must be valid JSON."})
                        continue
            if refusal is not None:
                await send({"type": "error", "id": None, "error": "invalid_argument",
                            "message": refusal[1]})
                await websocket.close(code=refusal[0], reason=refusal[1][:120])
                break
            malformed = _malformed(payload)
            try:
                await send(malformed if malformed is not None
                           else await _answer(payload, handle, lambda: numbering.seq))
            except _Close as refused:
                await send({"type": "error", "id": payload.get("id"), "error": "no_such_thread",
                            "message": refused.reason})
                await websocket.close(code=refused.code, reason=refused.reason[:120])
                break
    except WebSocketDisconnect:
        pass
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await follower
