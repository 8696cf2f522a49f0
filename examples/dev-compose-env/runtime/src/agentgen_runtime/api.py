"""A compatible subset of the LangGraph Platform HTTP API, enough for the `langgraph-sdk` client:
assistants (search, get), threads (create, get, delete, search, state, history), runs on a thread
(wait, stream, create, get, join) and stateless runs (/runs/wait, /runs/stream), with interrupts
resumed by `command`. Threads belong to the API key that created them; others get 404."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator
from enum import Enum
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from langgraph.types import Command
from psycopg import sql
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from .graphs import Graph
from .observability import RUN_DURATION, RUNS_ACTIVE, record_usage
from .observability import thread_id as thread_context
from .settings import Settings

StreamMode = Literal["values", "updates", "messages", "messages-tuple", "custom"]


class _Body(BaseModel):
    # An unknown field is a 422 naming it: silently dropping an option the client relies on
    # (a webhook, a resumable stream) would be worse.
    model_config = ConfigDict(extra="forbid")


class ThreadCreate(_Body):
    thread_id: str | None = Field(None, max_length=128)
    metadata: dict[str, Any] = {}
    if_exists: Literal["raise", "do_nothing"] = "raise"


class ThreadSearch(_Body):
    metadata: dict[str, Any] = {}
    ids: list[str] | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0)
    sort_by: Literal["thread_id", "created_at", "updated_at"] = "created_at"
    sort_order: Literal["asc", "desc"] = "desc"


class StateUpdate(_Body):
    values: dict[str, Any] | list[Any] | None = None
    as_node: str | None = None
    checkpoint_id: str | None = None
    checkpoint: dict[str, Any] | None = None


class HistoryQuery(_Body):
    limit: int = Field(10, ge=1, le=1000)
    before: dict[str, Any] | str | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None


class AssistantSearch(_Body):
    graph_id: str | None = None
    name: str | None = None
    metadata: dict[str, Any] = {}
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0)
    sort_by: Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None


class CommandBody(_Body):
    resume: Any = None
    update: Any = None
    goto: Any = None


class RunCreate(_Body):
    assistant_id: str = Field(..., min_length=1, max_length=128)
    input: dict[str, Any] | list[Any] | None = None
    command: CommandBody | None = None
    config: dict[str, Any] = {}
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] = {}
    stream_mode: StreamMode | list[StreamMode] = "values"
    interrupt_before: list[str] | Literal["*"] | None = None
    interrupt_after: list[str] | Literal["*"] | None = None
    checkpoint_id: str | None = None
    checkpoint: dict[str, Any] | None = None
    durability: Literal["sync", "async", "exit"] | None = None
    checkpoint_during: bool | None = None
    stream_subgraphs: bool = False
    # Sent by the SDK on every stream; resumable streams and detached runs are not supported yet.
    stream_resumable: Literal[False] = False
    on_disconnect: Literal["cancel"] = "cancel"
    on_completion: Literal["delete", "keep"] | None = None  # stateless runs keep no thread anyway
    multitask_strategy: Literal["reject"] = "reject"
    if_not_exists: Literal["create", "reject"] = "reject"

    def checkpoint_ref(self) -> str | None:
        return self.checkpoint_id or (self.checkpoint or {}).get("checkpoint_id")


def jsonable(value: Any) -> Any:
    """What the LangGraph API sends for state values: messages and models as dicts, interrupts as
    {value, id}, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, BaseModel):
        return jsonable(value.model_dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


class Service:
    """What the routes share: settings, the pool, the graphs bound to the checkpointer, the runs."""

    def __init__(self, settings: Settings, pool: Any, graphs: dict[str, Graph], checkpointer: Any,
                 store: Any) -> None:
        self.settings, self.pool, self.graphs = settings, pool, graphs
        self.checkpointer, self.store = checkpointer, store
        self.bound = {gid: g.compiled.copy(update={"checkpointer": checkpointer, "store": store})
                      for gid, g in graphs.items()}
        self.stateless = {gid: g.compiled.copy(update={"checkpointer": None, "store": store})
                          for gid, g in graphs.items()}
        self.busy: set[str] = set()  # threads with a run in progress in this process
        self.background: dict[str, asyncio.Task[Any]] = {}
        # thread id -> (owner, graph id of its runs): cached, as owners never change
        self._threads: dict[str, tuple[str, str | None]] = {}

    # --- assistants -------------------------------------------------------------------------
    def graph_for(self, assistant_id: str) -> Graph:
        for graph in self.graphs.values():
            if assistant_id in (graph.assistant_id, graph.graph_id):
                return graph
        raise HTTPException(404, f"assistant {assistant_id!r} not found")

    async def runnable(self, graph_id: str, config: dict[str, Any], stateful: bool) -> Any:
        """The graph a run executes: bound to the checkpointer when the run has a thread; a factory
        that takes the config is called with this run's config."""
        graph = self.graphs[graph_id]
        if graph.factory is None:
            return self.bound[graph_id] if stateful else self.stateless[graph_id]
        if stateful:
            return await graph.bound(self.checkpointer, self.store, config)
        return await graph.stateless(config, self.store)

    @staticmethod
    def assistant(graph: Graph) -> dict[str, Any]:
        return {"assistant_id": graph.assistant_id, "graph_id": graph.graph_id, "name": graph.graph_id,
                "description": graph.description, "config": {}, "context": {},
                "metadata": {"created_by": "system"},
                "version": 1, "created_at": "1970-01-01T00:00:00+00:00",
                "updated_at": "1970-01-01T00:00:00+00:00"}

    # --- threads ----------------------------------------------------------------------------
    async def create_thread(self, owner: str, body: ThreadCreate) -> dict[str, Any]:
        thread_id = body.thread_id or str(uuid.uuid4())
        async with self.pool.connection() as conn:
            row = await (await conn.execute(
                "INSERT INTO agent_threads (thread_id, owner, metadata) VALUES (%s, %s, %s) "
                "ON CONFLICT (thread_id) DO NOTHING RETURNING created_at, updated_at",
                (thread_id, owner, Jsonb(body.metadata)))).fetchone()
        if row is None:
            existing = await self.thread_row(owner, thread_id)  # 404 if it is someone else's
            if body.if_exists == "raise":
                raise HTTPException(409, f"thread {thread_id} already exists")
            return self.thread_json(existing)
        self._threads[thread_id] = (owner, None)
        return {"thread_id": thread_id, "created_at": _iso(row["created_at"]),
                "updated_at": _iso(row["updated_at"]), "metadata": body.metadata, "status": "idle",
                "values": None, "interrupts": {}}

    async def thread_row(self, owner: str, thread_id: str) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(
                "SELECT thread_id, owner, metadata, created_at, updated_at FROM agent_threads "
                "WHERE thread_id = %s", (thread_id,))).fetchone()
        if row is None or row["owner"] != owner:
            raise HTTPException(404, f"thread {thread_id} not found")
        return row

    async def authorize(self, owner: str, thread_id: str) -> str | None:
        """404 unless the thread exists and belongs to the caller; the graph its runs use."""
        cached = self._threads.get(thread_id)
        if cached is not None and cached[0] == owner:
            return cached[1]
        row = await self.thread_row(owner, thread_id)
        self._threads[thread_id] = (owner, row["metadata"].get("graph_id"))
        return self._threads[thread_id][1]

    async def bind_thread(self, owner: str, thread_id: str, graph_id: str) -> None:
        """Record which graph a thread runs (its state can only be read through that graph)."""
        if self._threads.get(thread_id) == (owner, graph_id):
            return
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE agent_threads SET metadata = metadata || %s, updated_at = now() "
                "WHERE thread_id = %s", (Jsonb({"graph_id": graph_id}), thread_id))
        self._threads[thread_id] = (owner, graph_id)

    def graph_of(self, row_or_graph_id: dict[str, Any] | str | None) -> Any:
        graph_id = (row_or_graph_id.get("metadata", {}).get("graph_id")
                    if isinstance(row_or_graph_id, dict) else row_or_graph_id)
        return self.bound.get(graph_id or "", next(iter(self.bound.values())))

    def thread_json(self, row: dict[str, Any], state: Any = None) -> dict[str, Any]:
        status = "busy" if row["thread_id"] in self.busy else "idle"
        interrupts = {}
        if state is not None:
            interrupts = {task.id: jsonable(task.interrupts) for task in state.tasks if task.interrupts}
            if interrupts:
                status = "interrupted"
        return {"thread_id": row["thread_id"], "created_at": _iso(row["created_at"]),
                "updated_at": _iso(row["updated_at"]), "metadata": row["metadata"], "status": status,
                "values": jsonable(state.values) if state is not None else None,
                "interrupts": interrupts}

    async def delete_thread(self, owner: str, thread_id: str) -> None:
        await self.thread_row(owner, thread_id)
        await next(iter(self.bound.values())).checkpointer.adelete_thread(thread_id)
        async with self.pool.connection() as conn:
            await conn.execute("DELETE FROM agent_threads WHERE thread_id = %s", (thread_id,))
        self._threads.pop(thread_id, None)

    async def state(self, thread_id: str, graph_id: str | None,
                    checkpoint_id: str | None = None) -> Any:
        graph = self.graph_of(graph_id)
        config: dict[str, Any] = {"configurable": {"thread_id": thread_id}}
        if checkpoint_id:
            config["configurable"]["checkpoint_id"] = checkpoint_id
        return await graph.aget_state(config)

    @staticmethod
    def state_json(state: Any) -> dict[str, Any]:
        def checkpoint(config: Any) -> dict[str, Any] | None:
            if not config:
                return None
            conf = config["configurable"]
            return {"thread_id": conf.get("thread_id"), "checkpoint_ns": conf.get("checkpoint_ns", ""),
                    "checkpoint_id": conf.get("checkpoint_id")}

        return {
            "values": jsonable(state.values), "next": list(state.next),
            "tasks": [{"id": t.id, "name": t.name, "error": t.error,
                       "interrupts": jsonable(t.interrupts), "state": None} for t in state.tasks],
            "metadata": jsonable(state.metadata), "created_at": state.created_at,
            "checkpoint": checkpoint(state.config), "parent_checkpoint": checkpoint(state.parent_config),
            "interrupts": jsonable(state.interrupts),
        }

    # --- runs -------------------------------------------------------------------------------
    def run_arguments(self, body: RunCreate, thread_id: str | None, run_id: str) -> tuple[Any, dict]:
        config = dict(body.config)
        configurable = dict(config.get("configurable") or {})
        if thread_id is not None:
            configurable["thread_id"] = thread_id
            if body.checkpoint_ref():
                configurable["checkpoint_id"] = body.checkpoint_ref()
        config["configurable"] = configurable
        config["recursion_limit"] = min(int(config.get("recursion_limit") or 10**6),
                                        self.settings.recursion_limit)
        config["run_id"] = run_id
        config["metadata"] = {**(config.get("metadata") or {}), **body.metadata, "run_id": run_id}
        if body.command is not None:
            command = body.command.model_dump(exclude_none=True)
            return Command(**command), config
        return body.input, config

    def invoke_options(self, body: RunCreate, graph_id: str, stateful: bool) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if body.interrupt_before:
            options["interrupt_before"] = body.interrupt_before
        if body.interrupt_after:
            options["interrupt_after"] = body.interrupt_after
        if stateful:
            during = {True: "async", False: "exit"}.get(body.checkpoint_during)  # type: ignore[arg-type]
            options["durability"] = body.durability or during or self.settings.checkpoint_durability
        # Without context a graph with a context schema gets the schema's defaults, as under
        # `langgraph dev` ({} is coerced to the schema by LangGraph).
        context = body.context if body.context is not None else self.graphs[graph_id].default_context()
        if context is not None:
            options["context"] = context
        return options

    async def execute(self, graph_id: str, body: RunCreate, thread_id: str | None,
                      run_id: str) -> dict[str, Any]:
        """Run to completion (or interrupt) within the run timeout; the final values."""
        stateful = thread_id is not None
        if not stateful and body.command is not None:
            raise HTTPException(422, "a command (resume) needs a thread: use /threads/{id}/runs")
        run_input, config = self.run_arguments(body, thread_id, run_id)
        graph = await self.runnable(graph_id, config, stateful)
        with self.tracked(graph_id, thread_id):
            async with asyncio.timeout(self.settings.run_timeout_seconds):
                result = await graph.ainvoke(run_input, config,
                                             **self.invoke_options(body, graph_id, stateful))
        for message in (result or {}).get("messages", [])[-1:] if isinstance(result, dict) else []:
            record_usage(self.settings, message)
        return jsonable(result)

    def tracked(self, graph_id: str, thread_id: str | None):
        service = self

        class _Tracked:
            def __enter__(self) -> None:
                if thread_id is not None:
                    if thread_id in service.busy:
                        raise HTTPException(409, f"thread {thread_id} already has a run in progress")
                    service.busy.add(thread_id)
                    thread_context.set(thread_id)
                self.start = time.perf_counter()
                RUNS_ACTIVE.labels(graph_id).inc()

            def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
                RUNS_ACTIVE.labels(graph_id).dec()
                status = "success" if kind is None else (
                    "timeout" if kind is TimeoutError else "error")
                RUN_DURATION.labels(graph_id, status).observe(time.perf_counter() - self.start)
                if thread_id is not None:
                    service.busy.discard(thread_id)

        return _Tracked()

    async def stream(self, graph_id: str, body: RunCreate, thread_id: str | None,
                     run_id: str) -> AsyncIterator[bytes]:
        """SSE: `metadata`, then one event per chunk of each requested stream mode, or `error`."""
        stateful = thread_id is not None
        run_input, config = self.run_arguments(body, thread_id, run_id)
        modes = [body.stream_mode] if isinstance(body.stream_mode, str) else list(body.stream_mode)
        internal = sorted({"messages" if m in ("messages", "messages-tuple") else m for m in modes}
                          | ({"updates"} if "messages" in modes else set()))
        yield _sse("metadata", {"run_id": run_id, "attempt": 1})
        partial: dict[str, Any] = {}
        last_message = None
        try:
            graph = await self.runnable(graph_id, config, stateful)
            with self.tracked(graph_id, thread_id):
                async with asyncio.timeout(self.settings.run_timeout_seconds):
                    async for item in graph.astream(run_input, config, stream_mode=internal,
                                                    subgraphs=body.stream_subgraphs,
                                                    **self.invoke_options(body, graph_id, stateful)):
                        namespace, mode, chunk = item if body.stream_subgraphs else ((), *item)
                        if namespace:  # a subgraph's event: "<mode>|<ns>", as LangGraph Platform names it
                            if mode in modes:
                                yield _sse(f"{mode}|{'|'.join(namespace)}", jsonable(chunk))
                            continue
                        if mode == "messages":
                            message, metadata = chunk
                            if "messages-tuple" in modes:
                                yield _sse("messages", [jsonable(message), jsonable(metadata)])
                            if "messages" in modes:
                                key = message.id or "message"
                                if key not in partial:
                                    yield _sse("messages/metadata",
                                               {key: {"metadata": jsonable(metadata)}})
                                    partial[key] = message
                                else:
                                    partial[key] = partial[key] + message
                                yield _sse("messages/partial", [jsonable(partial[key])])
                            continue
                        if mode == "updates" and partial:
                            yield _sse("messages/complete", [jsonable(m) for m in partial.values()])
                            partial.clear()
                        if mode == "values" and isinstance(chunk, dict) and chunk.get("messages"):
                            last_message = chunk["messages"][-1]
                        if mode in modes:
                            yield _sse(mode, jsonable(chunk))
            if last_message is not None:
                record_usage(self.settings, last_message)
        except HTTPException as exc:
            yield _sse("error", {"error": "HTTPException", "message": exc.detail})
        except TimeoutError:
            yield _sse("error", {"error": "TimeoutError", "message":
                                 f"run exceeded {self.settings.run_timeout_seconds} s"})
        except Exception as exc:  # noqa: BLE001 - the stream reports it as an event
            yield _sse("error", {"error": type(exc).__name__, "message": str(exc)})

    async def save_run(self, run_id: str, thread_id: str, assistant_id: str, status: str,
                       metadata: dict[str, Any], error: str | None = None) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO agent_runs (run_id, thread_id, assistant_id, status, metadata, error) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (run_id) DO UPDATE SET "
                "status = excluded.status, error = excluded.error, updated_at = now()",
                (run_id, thread_id, assistant_id, status, Jsonb(metadata), error))

    async def run_row(self, thread_id: str, run_id: str) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(
                "SELECT * FROM agent_runs WHERE run_id = %s AND thread_id = %s",
                (run_id, thread_id))).fetchone()
        if row is None:
            raise HTTPException(404, f"run {run_id} not found")
        return row

    @staticmethod
    def run_json(row: dict[str, Any]) -> dict[str, Any]:
        return {"run_id": row["run_id"], "thread_id": row["thread_id"],
                "assistant_id": row["assistant_id"], "status": row["status"],
                "metadata": row["metadata"], "created_at": _iso(row["created_at"]),
                "updated_at": _iso(row["updated_at"]), "multitask_strategy": "reject",
                "kwargs": {}}


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _service(request: Request) -> Service:
    return request.app.state.service


def _owner(request: Request) -> str:
    return request.state.identity


def build_router(authenticate: Any) -> APIRouter:
    """The API routes; `authenticate` is the dependency that checks the key and the rate limit."""
    router = APIRouter(dependencies=[Depends(authenticate)])

    @router.post("/assistants/search")
    async def search_assistants(body: AssistantSearch, request: Request) -> list[dict[str, Any]]:
        graphs = [g for g in _service(request).graphs.values()
                  if body.graph_id in (None, g.graph_id) and body.name in (None, g.graph_id)]
        return [Service.assistant(g) for g in graphs[body.offset: body.offset + body.limit]]

    @router.get("/assistants/{assistant_id}")
    async def get_assistant(assistant_id: str, request: Request) -> dict[str, Any]:
        return Service.assistant(_service(request).graph_for(assistant_id))

    @router.get("/assistants/{assistant_id}/schemas")
    async def get_schemas(assistant_id: str, request: Request) -> dict[str, Any]:
        return _service(request).graph_for(assistant_id).schemas()

    @router.post("/threads")
    async def create_thread(body: ThreadCreate, request: Request) -> dict[str, Any]:
        return await _service(request).create_thread(_owner(request), body)

    @router.post("/threads/search")
    async def search_threads(body: ThreadSearch, request: Request) -> list[dict[str, Any]]:
        service = _service(request)
        query = sql.SQL(
            "SELECT thread_id, owner, metadata, created_at, updated_at FROM agent_threads "
            "WHERE owner = %s AND metadata @> %s AND (%s::text[] IS NULL OR thread_id = ANY(%s)) "
            "ORDER BY {} {} LIMIT %s OFFSET %s").format(
                sql.Identifier(body.sort_by), sql.SQL("ASC" if body.sort_order == "asc" else "DESC"))
        async with service.pool.connection() as conn:
            rows = await (await conn.execute(
                query,
                (_owner(request), Jsonb(body.metadata), body.ids, body.ids, body.limit,
                 body.offset))).fetchall()
        return [service.thread_json(row) for row in rows]

    @router.get("/threads/{thread_id}")
    async def get_thread(thread_id: str, request: Request) -> dict[str, Any]:
        service = _service(request)
        row = await service.thread_row(_owner(request), thread_id)
        return service.thread_json(row, await service.state(thread_id, row["metadata"].get("graph_id")))

    @router.delete("/threads/{thread_id}", status_code=204)
    async def delete_thread(thread_id: str, request: Request) -> Response:
        await _service(request).delete_thread(_owner(request), thread_id)
        return Response(status_code=204)

    @router.get("/threads/{thread_id}/state")
    @router.get("/threads/{thread_id}/state/{checkpoint_id}")
    async def get_state(thread_id: str, request: Request,
                        checkpoint_id: str | None = None) -> dict[str, Any]:
        service = _service(request)
        graph_id = await service.authorize(_owner(request), thread_id)
        return Service.state_json(await service.state(thread_id, graph_id, checkpoint_id))

    @router.post("/threads/{thread_id}/state")
    async def update_state(thread_id: str, body: StateUpdate, request: Request) -> dict[str, Any]:
        service = _service(request)
        graph = service.graph_of(await service.authorize(_owner(request), thread_id))
        config: dict[str, Any] = {"configurable": {"thread_id": thread_id}}
        checkpoint_id = body.checkpoint_id or (body.checkpoint or {}).get("checkpoint_id")
        if checkpoint_id:
            config["configurable"]["checkpoint_id"] = checkpoint_id
        new_config = await graph.aupdate_state(config, body.values, as_node=body.as_node)
        return {"checkpoint": new_config["configurable"]}

    async def history(service: Service, thread_id: str, graph_id: str | None,
                      query: HistoryQuery) -> list[dict]:
        graph = service.graph_of(graph_id)
        config: dict[str, Any] = {"configurable": {"thread_id": thread_id,
                                                   **(query.checkpoint or {})}}
        before = ({"configurable": query.before if isinstance(query.before, dict)
                   else {"checkpoint_id": query.before}} if query.before else None)
        return [Service.state_json(state) async for state in graph.aget_state_history(
            config, limit=query.limit, before=before, filter=query.metadata)]

    @router.post("/threads/{thread_id}/history")
    async def post_history(thread_id: str, body: HistoryQuery, request: Request) -> list[dict]:
        service = _service(request)
        graph_id = await service.authorize(_owner(request), thread_id)
        return await history(service, thread_id, graph_id, body)

    @router.get("/threads/{thread_id}/history")
    async def get_history(thread_id: str, request: Request, limit: int = 10) -> list[dict]:
        service = _service(request)
        graph_id = await service.authorize(_owner(request), thread_id)
        return await history(service, thread_id, graph_id, HistoryQuery(limit=limit))

    async def prepare(request: Request, body: RunCreate, thread_id: str | None) -> tuple[Service, str]:
        service = _service(request)
        graph = service.graph_for(body.assistant_id)
        if thread_id is not None:
            try:
                await service.authorize(_owner(request), thread_id)
            except HTTPException:
                if body.if_not_exists != "create":
                    raise
                await service.create_thread(_owner(request), ThreadCreate(thread_id=thread_id))
            await service.bind_thread(_owner(request), thread_id, graph.graph_id)
        return service, graph.graph_id

    async def wait(request: Request, body: RunCreate, thread_id: str | None) -> JSONResponse:
        service, graph_id = await prepare(request, body, thread_id)
        run_id = str(uuid.uuid4())
        try:
            result = await service.execute(graph_id, body, thread_id, run_id)
        except TimeoutError:
            raise HTTPException(504, f"run exceeded {service.settings.run_timeout_seconds} s") from None
        return JSONResponse(result, headers={"Content-Location": f"/runs/{run_id}"})

    @router.post("/threads/{thread_id}/runs/wait")
    async def wait_on_thread(thread_id: str, body: RunCreate, request: Request) -> JSONResponse:
        return await wait(request, body, thread_id)

    @router.post("/runs/wait")
    async def wait_stateless(body: RunCreate, request: Request) -> JSONResponse:
        return await wait(request, body, None)

    async def stream(request: Request, body: RunCreate, thread_id: str | None) -> StreamingResponse:
        service, graph_id = await prepare(request, body, thread_id)
        if thread_id is not None and thread_id in service.busy:
            raise HTTPException(409, f"thread {thread_id} already has a run in progress")
        run_id = str(uuid.uuid4())
        return StreamingResponse(service.stream(graph_id, body, thread_id, run_id),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no",
                                          "Content-Location": f"/runs/{run_id}"})

    @router.post("/threads/{thread_id}/runs/stream")
    async def stream_on_thread(thread_id: str, body: RunCreate, request: Request) -> StreamingResponse:
        return await stream(request, body, thread_id)

    @router.post("/runs/stream")
    async def stream_stateless(body: RunCreate, request: Request) -> StreamingResponse:
        return await stream(request, body, None)

    @router.post("/threads/{thread_id}/runs")
    async def create_run(thread_id: str, body: RunCreate, request: Request) -> dict[str, Any]:
        service, graph_id = await prepare(request, body, thread_id)
        if thread_id in service.busy:
            raise HTTPException(409, f"thread {thread_id} already has a run in progress")
        run_id = str(uuid.uuid4())
        assistant_id = service.graphs[graph_id].assistant_id
        await service.save_run(run_id, thread_id, assistant_id, "pending", body.metadata)

        async def background() -> None:
            status, error = "success", None
            try:
                await service.save_run(run_id, thread_id, assistant_id, "running", body.metadata)
                result = await service.execute(graph_id, body, thread_id, run_id)
                if isinstance(result, dict) and result.get("__interrupt__"):
                    status = "interrupted"
            except TimeoutError:
                status, error = "timeout", f"run exceeded {service.settings.run_timeout_seconds} s"
            except Exception as exc:  # noqa: BLE001 - recorded on the run
                status, error = "error", f"{type(exc).__name__}: {exc}"
            finally:
                service.background.pop(run_id, None)
            await service.save_run(run_id, thread_id, assistant_id, status, body.metadata, error)

        service.background[run_id] = asyncio.create_task(background())
        return Service.run_json(await service.run_row(thread_id, run_id))

    @router.get("/threads/{thread_id}/runs/{run_id}")
    async def get_run(thread_id: str, run_id: str, request: Request) -> dict[str, Any]:
        service = _service(request)
        await service.authorize(_owner(request), thread_id)
        return Service.run_json(await service.run_row(thread_id, run_id))

    @router.get("/threads/{thread_id}/runs/{run_id}/join")
    async def join_run(thread_id: str, run_id: str, request: Request) -> Any:
        service = _service(request)
        await service.authorize(_owner(request), thread_id)
        task = service.background.get(run_id)
        if task is not None:
            await asyncio.shield(task)
        else:  # finished, or running in another replica
            deadline = time.monotonic() + service.settings.run_timeout_seconds
            while (await service.run_row(thread_id, run_id))["status"] in ("pending", "running"):
                if time.monotonic() > deadline:
                    raise HTTPException(504, f"run {run_id} did not finish in time")
                await asyncio.sleep(0.2)
        row = await service.run_row(thread_id, run_id)
        if row["status"] == "error":
            return {"__error__": {"error": "RunError", "message": row["error"]}}
        state = await service.state(thread_id, service.graph_for(row["assistant_id"]).graph_id)
        values = jsonable(state.values)
        if state.interrupts:
            values["__interrupt__"] = jsonable(state.interrupts)
        return values

    return router
