"""The thread-centric streaming protocol (`client.threads.stream(...)` in langgraph-sdk 0.4):
`POST /threads/{id}/commands` (one command in, its answer out: `run.start`, `input.respond`, and
the subscription commands the HTTP transport answers statelessly) and `POST
/threads/{id}/stream/events` (the thread's protocol events, filtered by the body). Runs are
created by the runs router's own path (same authorization, limits and strategies); events come
from the thread's followed stream (`follow_thread`), so any replica serves them."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from ..models import RunCreate
from ..ownership import Scope, thread_not_found
from ..protocol import MARK, MULTITASK, Subscription, envelopes
from ..service import Service
from ..stream import follow_thread
from .deps import Caller, Headers, Svc, sse
from .runs import new_run

router = APIRouter(tags=["threads"])
SETTLE_SECONDS = 5.0
COMMANDS = frozenset({"run.start", "input.respond", "agent.getTree", "subscription.subscribe",
                      "subscription.unsubscribe", "subscription.reconnect"})


class Refused(Exception):
    """A command the protocol answers with an error envelope (`code`: the protocol's error code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


async def _body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        raise HTTPException(400, "Invalid JSON body") from None


@router.post("/threads/{thread_id}/commands")
async def command(thread_id: str, request: Request, svc: Svc, caller: Caller,
                  headers: Headers) -> JSONResponse:
    payload = await _body(request)
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), int) \
            or isinstance(payload.get("id"), bool) or not isinstance(payload.get("method"), str):
        return JSONResponse({"type": "error", "id": payload.get("id") if isinstance(payload, dict)
                             else None, "error": "invalid_argument",
                             "message": "Protocol commands must include an integer id and string "
                                        "method."}, status_code=400)
    command_id, method = payload["id"], payload["method"]
    params = payload.get("params") if isinstance(payload.get("params"), dict) else {}
    try:
        if method not in COMMANDS:
            raise Refused("unknown_command", f"Unknown protocol command: {method}")
        result = await _dispatch(svc, caller, thread_id, method, params, headers)
    except Refused as exc:
        return JSONResponse({"type": "error", "id": command_id, "error": exc.code,
                             "message": str(exc)})
    # each HTTP command is answered by a fresh session: it has applied nothing yet
    return JSONResponse({"type": "success", "id": command_id, "result": result,
                         "meta": {"applied_through_seq": 0}})


async def _dispatch(svc: Service, caller: Scope, thread_id: str, method: str,
                    params: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    if method == "run.start":
        return await _run_start(svc, caller, thread_id, params, headers)
    if method == "input.respond":
        await _respond(svc, caller, thread_id, params, headers)
        return {}
    if method == "subscription.subscribe":  # over HTTP the filter is the event stream's body
        if not isinstance(params.get("channels"), list) or not params["channels"]:
            raise Refused("invalid_argument",
                          "subscription.subscribe requires a non-empty channels array.")
        try:
            Subscription.parse(params)
        except ValueError:
            raise Refused("invalid_argument",
                          "subscription.subscribe received an unsupported channel.") from None
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

    async def run_of(run_id: str) -> dict[str, Any] | None:
        try:
            return await svc.threads.run(scope, thread_id, run_id)
        except HTTPException:
            return None

    async def body() -> AsyncIterator[bytes]:
        async for event in envelopes(followed, run_of, subscription):
            if event is None:
                yield b": keepalive\n\n"
                continue
            yield sse(event["method"], event, event["seq"])

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
