"""A compatible subset of the LangGraph Platform HTTP API, enough for the `langgraph-sdk` client:
assistants (search, get), threads (create, get, delete, search, state, history), runs on a thread
(wait, stream, create, get, join) and stateless runs (/runs/wait, /runs/stream), with interrupts
resumed by `command`. Threads belong to the API key that created them; others get 404."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable
from enum import Enum
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from langgraph.types import Command
from psycopg import OperationalError, sql
from psycopg.types.json import Jsonb
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .engine import Engine, RunRejected, RunReleased, Transient
from .errors import dependency_failure
from .fencing import FENCE, Fenced, is_fenced
from .graphs import Graph
from .observability import RUN_DURATION, RUNS_ACTIVE, record_usage
from .observability import thread_id as thread_context
from .settings import Settings

StreamMode = Literal["values", "updates", "messages", "messages-tuple", "custom"]


# What a client may send in any JSON value: PostgreSQL cannot store NUL in text or jsonb, nor
# NaN/Infinity in jsonb, and a deeply nested value would fail whoever reads it back.
MAX_JSON_DEPTH = 32
MAX_OFFSET = 2**31 - 1


def json_problem(value: Any, where: str) -> str | None:
    """Why a client's JSON value cannot be taken (naming where in it), or None."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return f"{path}: nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(item, str):
            if "\x00" in item:
                return f"{path}: contains a NUL character"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{path}: {item} is not a finite number"
        elif isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str) and "\x00" in key:
                    return f"{path}: a key contains a NUL character"
                stack.append((inner, f"{path}.{key}", depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((inner, f"{path}[{i}]", depth + 1) for i, inner in enumerate(item))
    return None


class _Body(BaseModel):
    # An unknown field is a 422 naming it: silently dropping an option the client relies on
    # (a webhook, a resumable stream) would be worse.
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        problem = json_problem(data, "body")
        if problem is not None:
            raise ValueError(problem)
        return data


class ThreadCreate(_Body):
    thread_id: str | None = Field(None, max_length=128)
    metadata: dict[str, Any] = {}
    if_exists: Literal["raise", "do_nothing"] = "raise"


class ThreadSearch(_Body):
    metadata: dict[str, Any] = {}
    ids: list[str] | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
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
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    sort_by: Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None


class CommandBody(_Body):
    resume: Any = None
    update: Any = None
    goto: Any = None


class CancelMany(_Body):
    thread_id: str | None = None
    run_ids: list[str] | None = None
    status: Literal["pending", "running", "all"] | None = None

    def model_post_init(self, context: Any) -> None:
        if self.status == "all":
            self.status = None


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
    # Every streamed run's events are kept (any process replays them after Last-Event-ID).
    stream_resumable: bool = False
    on_disconnect: Literal["cancel", "continue"] = "continue"
    on_completion: Literal["delete", "keep"] | None = None  # stateless runs keep no thread anyway
    multitask_strategy: Literal["reject", "enqueue", "interrupt", "rollback"] = "enqueue"
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


KEEPALIVE_SECONDS = 10.0
WAIT_RETRY_SECONDS = 1.0  # a waiting client's read of its run's outcome, retried during an outage
MAX_BATCH = 100
# Thread rows with whether a run is pending or running on them (any process).
_THREADS = sql.SQL(
    "SELECT thread_id, owner, metadata, created_at, updated_at, EXISTS (SELECT 1 FROM agent_runs r "
    "WHERE r.thread_id = agent_threads.thread_id AND r.status IN ('pending', 'running')) AS busy "
    "FROM agent_threads")


def checkpoint_config(thread_id: str, checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    """The checkpointer config of a thread the caller was authorised for: a client's checkpoint
    reference may only name a checkpoint (id, namespace) within it, never another thread."""
    configurable: dict[str, Any] = {"thread_id": thread_id}
    for key in ("checkpoint_ns", "checkpoint_id"):
        value = (checkpoint or {}).get(key)
        if value is not None:
            if not isinstance(value, str):
                raise HTTPException(422, f"checkpoint.{key} must be a string")
            configurable[key] = value
    return {"configurable": configurable}


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
        self.engine: Engine = Engine(settings, pool, self.execute_row, self.rollback_run)
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
                sql.SQL("{} WHERE thread_id = %s").format(_THREADS), (thread_id,))).fetchone()
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
        status = "busy" if row.get("busy") else "idle"
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
        return await graph.aget_state(checkpoint_config(thread_id, {"checkpoint_id": checkpoint_id}))

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

    async def resumes(self, thread_id: str, run_id: str) -> bool:
        """Whether the thread's newest checkpoint was written by this run: an attempt after a
        crash then continues from it (input None) instead of applying the input again."""
        saved = await self.checkpointer.aget_tuple({"configurable": {"thread_id": thread_id,
                                                                     "checkpoint_ns": ""}})
        return saved is not None and (saved.metadata or {}).get("run_id") == run_id

    async def execute_row(self, row: dict[str, Any],
                          emit: Callable[[str, Any], None]) -> tuple[str, Any, str | None]:
        """Run one claimed run to its end (the engine's executor): (status, output, error). Streamed
        runs emit their events; the output is the final values (with `__interrupt__`)."""
        body = RunCreate.model_validate(row["kwargs"])
        thread_id, graph_id, run_id = row["thread_id"], row["graph_id"], row["run_id"]
        stateful = thread_id is not None
        if row["record_events"] and row["attempt"] == 1:
            emit("metadata", {"run_id": run_id, "attempt": row["attempt"]})
        run_input, config = self.run_arguments(body, thread_id, run_id)
        config["metadata"].update(graph_id=graph_id, assistant_id=row["assistant_id"],
                                  run_attempt=row["attempt"])
        if stateful and row["attempt"] > 1 and await self.resumes(thread_id, run_id):
            run_input = None  # continue from the checkpoint the earlier attempt saved
        started = time.perf_counter()
        status, output, error = "success", None, None
        token = thread_context.set(thread_id) if stateful else None
        # every write this task (and the tasks LangGraph starts for it) makes is fenced by this claim
        fence = FENCE.set((run_id, row["attempt"]))
        RUNS_ACTIVE.labels(graph_id).inc()
        try:
            graph = await self.runnable(graph_id, config, stateful)
            async with asyncio.timeout(self.settings.run_timeout_seconds):
                if row["record_events"]:
                    output = await self._stream(graph, run_input, config, body, graph_id, stateful, emit)
                else:
                    output = jsonable(await graph.ainvoke(
                        run_input, config, **self.invoke_options(body, graph_id, stateful)))
            if stateful and not isinstance(output, dict):
                output = jsonable((await graph.aget_state(config)).values)
            if isinstance(output, dict) and output.get("__interrupt__"):
                status = "interrupted"
            for message in (output or {}).get("messages", [])[-1:] if isinstance(output, dict) else []:
                record_usage(self.settings, message)
        except TimeoutError:
            status, error = "timeout", f"run exceeded {self.settings.run_timeout_seconds} s"
            emit("error", {"error": "TimeoutError", "message": error})
        except (asyncio.CancelledError, KeyboardInterrupt):
            RUN_DURATION.labels(graph_id, "interrupted").observe(time.perf_counter() - started)
            raise
        except Exception as exc:
            if is_fenced(exc):  # another worker holds the run now: stop, write nothing more
                raise Fenced(str(exc)) from exc
            if isinstance(exc, OperationalError | PoolTimeout):  # the database: run it again
                raise Transient(str(exc)) from exc
            # the run's outcome, reported to its clients
            status, error = "error", f"{type(exc).__name__}: {exc}"
            emit("error", {"error": type(exc).__name__, "message": str(exc)})
        finally:
            FENCE.reset(fence)
            RUNS_ACTIVE.labels(graph_id).dec()
            if token is not None:
                thread_context.reset(token)
        RUN_DURATION.labels(graph_id, status).observe(time.perf_counter() - started)
        return status, output, error

    async def _stream(self, graph: Any, run_input: Any, config: dict[str, Any], body: RunCreate,
                      graph_id: str, stateful: bool, emit: Callable[[str, Any], None]) -> Any:
        """Stream the run, emitting one event per chunk of each requested mode; the final values."""
        modes = [body.stream_mode] if isinstance(body.stream_mode, str) else list(body.stream_mode)
        internal = sorted({"messages" if m in ("messages", "messages-tuple") else m for m in modes}
                          | {"values"} | ({"updates"} if "messages" in modes else set()))
        partial: dict[str, Any] = {}
        values: Any = None
        async for item in graph.astream(run_input, config, stream_mode=internal,
                                        subgraphs=body.stream_subgraphs,
                                        **self.invoke_options(body, graph_id, stateful)):
            namespace, mode, chunk = item if body.stream_subgraphs else ((), *item)
            if namespace:  # a subgraph's event: "<mode>|<ns>", as LangGraph Platform names it
                if mode in modes:
                    emit(f"{mode}|{'|'.join(namespace)}", jsonable(chunk))
                continue
            if mode == "messages":
                message, metadata = chunk
                if "messages-tuple" in modes:
                    emit("messages", [jsonable(message), jsonable(metadata)])
                if "messages" in modes:
                    key = message.id or "message"
                    if key not in partial:
                        emit("messages/metadata", {key: {"metadata": jsonable(metadata)}})
                        partial[key] = message
                    else:
                        partial[key] = partial[key] + message
                    emit("messages/partial", [jsonable(partial[key])])
                continue
            if mode == "updates" and partial:
                emit("messages/complete", [jsonable(m) for m in partial.values()])
                partial.clear()
            if mode == "values":
                values = jsonable(chunk)
            if mode in modes:
                emit(mode, jsonable(chunk))
        return values

    async def rollback_run(self, row: dict[str, Any]) -> None:
        """Remove what a rolled-back run wrote: its checkpoints and their pending writes."""
        if row["thread_id"] is None:
            return
        async with self.pool.connection() as conn, conn.transaction():
            ids = [r["checkpoint_id"] for r in await (await conn.execute(
                "DELETE FROM checkpoints WHERE thread_id = %s AND metadata ->> 'run_id' = %s "
                "RETURNING checkpoint_id", (row["thread_id"], row["run_id"]))).fetchall()]
            if ids:
                await conn.execute("DELETE FROM checkpoint_writes WHERE thread_id = %s "
                                   "AND checkpoint_id = ANY(%s)", (row["thread_id"], ids))

    async def run_row(self, thread_id: str | None, run_id: str) -> dict[str, Any]:
        row = await self.engine.get(run_id)
        if row is None or row["thread_id"] != thread_id:
            raise HTTPException(404, f"run {run_id} not found")
        return row

    @staticmethod
    def run_json(row: dict[str, Any]) -> dict[str, Any]:
        return {"run_id": row["run_id"], "thread_id": row["thread_id"],
                "assistant_id": row["assistant_id"], "status": row["status"],
                "metadata": row["metadata"], "created_at": _iso(row["created_at"]),
                "updated_at": _iso(row["updated_at"]),
                "multitask_strategy": row["multitask_strategy"], "kwargs": row["kwargs"]}

    @staticmethod
    def outcome(row: dict[str, Any] | None) -> Any:
        """What `wait` and `join` answer for a finished run (the Platform's body: the final values,
        or `__error__`)."""
        if row is None:
            return {"__error__": {"error": "RunRolledBack", "message": "the run was rolled back"}}
        if row["status"] in ("error", "timeout"):
            return {"__error__": {"error": "TimeoutError" if row["status"] == "timeout" else "RunError",
                                  "message": row["error"]}}
        return row["output"]


def _sse(event: str, data: Any, seq: int | None = None) -> bytes:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _service(request: Request) -> Service:
    return request.app.state.service


def _plain_parameters(request: Request) -> None:
    """Ids in the path and values in the query are text PostgreSQL can store (no NUL)."""
    for name, value in (*request.path_params.items(), *request.query_params.items()):
        if "\x00" in value:
            raise HTTPException(422, f"{name}: contains a NUL character")


def _owner(request: Request) -> str:
    return request.state.identity


def build_router(authenticate: Any) -> APIRouter:
    """The API routes; `authenticate` is the dependency that checks the key and the rate limit."""
    router = APIRouter(dependencies=[Depends(_plain_parameters), Depends(authenticate)])

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
            "{} WHERE owner = %s AND metadata @> %s AND (%s::text[] IS NULL OR thread_id = ANY(%s)) "
            "ORDER BY {} {} LIMIT %s OFFSET %s").format(
                _THREADS, sql.Identifier(body.sort_by),
                sql.SQL("ASC" if body.sort_order == "asc" else "DESC"))
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
        config = checkpoint_config(thread_id, {**(body.checkpoint or {}),
                                               **({"checkpoint_id": body.checkpoint_id}
                                                  if body.checkpoint_id else {})})
        new_config = await graph.aupdate_state(config, body.values, as_node=body.as_node)
        return {"checkpoint": new_config["configurable"]}

    async def history(service: Service, thread_id: str, graph_id: str | None,
                      query: HistoryQuery) -> list[dict]:
        graph = service.graph_of(graph_id)
        config = checkpoint_config(thread_id, query.checkpoint)
        before = (checkpoint_config(thread_id, query.before if isinstance(query.before, dict)
                                    else {"checkpoint_id": query.before}) if query.before else None)
        return [Service.state_json(state) async for state in graph.aget_state_history(
            config, limit=query.limit, before=before, filter=query.metadata)]

    @router.post("/threads/{thread_id}/history")
    async def post_history(thread_id: str, body: HistoryQuery, request: Request) -> list[dict]:
        service = _service(request)
        graph_id = await service.authorize(_owner(request), thread_id)
        return await history(service, thread_id, graph_id, body)

    @router.get("/threads/{thread_id}/history")
    async def get_history(thread_id: str, request: Request,
                          limit: int = Query(10, ge=1, le=1000)) -> list[dict]:
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
        elif body.command is not None:
            raise HTTPException(422, "a command (resume) needs a thread: use /threads/{id}/runs")
        return service, graph.graph_id

    async def create(request: Request, body: RunCreate, thread_id: str | None,
                     record_events: bool) -> tuple[Service, dict[str, Any]]:
        """Prepare, then create the run (a row, claimed here when this process has capacity)."""
        service, graph_id = await prepare(request, body, thread_id)
        try:
            row = await service.engine.create(
                run_id=str(uuid.uuid4()), thread_id=thread_id, graph_id=graph_id,
                assistant_id=service.graphs[graph_id].assistant_id,
                kwargs=body.model_dump(mode="json", exclude_none=True), metadata=body.metadata,
                strategy=body.multitask_strategy, record_events=record_events)
        except RunRejected as exc:
            raise HTTPException(409, str(exc)) from None
        return service, row

    def run_path(row: dict[str, Any]) -> str:
        if row["thread_id"] is None:
            return f"/runs/{row['run_id']}"
        return f"/threads/{row['thread_id']}/runs/{row['run_id']}"

    async def wait(request: Request, body: RunCreate, thread_id: str | None) -> StreamingResponse:
        """The final values, sent when the run ends; the headers go at once, with `Location` (the
        run's join): a client whose connection drops (this process died) joins it there."""
        service, row = await create(request, body, thread_id, record_events=False)
        run_id = row["run_id"]

        async def body_when_done() -> AsyncIterator[bytes]:
            # Never a complete body without the outcome: while the database is unavailable the
            # wait is retried (keepalives go on); RunReleased (this process is shutting down) and
            # anything else propagate, the connection drops without a complete body (see
            # ErrorMiddleware) and the client joins the run at Location elsewhere.
            waiting = asyncio.ensure_future(service.engine.wait(run_id))
            try:
                while True:
                    if not (await asyncio.wait({waiting}, timeout=KEEPALIVE_SECONDS))[0]:
                        yield b"\n"  # JSON allows leading whitespace; proxies see a live response
                        continue
                    exc = waiting.exception()
                    if exc is not None and dependency_failure(exc) is not None:
                        await asyncio.sleep(WAIT_RETRY_SECONDS)
                        waiting = asyncio.ensure_future(service.engine.wait(run_id))
                        continue
                    yield json.dumps(Service.outcome(waiting.result()),
                                     separators=(",", ":")).encode()
                    return
            finally:
                waiting.cancel()

        headers = {"Content-Location": run_path(row)}
        if thread_id is not None:
            headers["Location"] = f"{run_path(row)}/join"
        return StreamingResponse(body_when_done(), media_type="application/json", headers=headers)

    @router.post("/threads/{thread_id}/runs/wait")
    async def wait_on_thread(thread_id: str, body: RunCreate, request: Request) -> StreamingResponse:
        return await wait(request, body, thread_id)

    @router.post("/runs/wait")
    async def wait_stateless(body: RunCreate, request: Request) -> StreamingResponse:
        return await wait(request, body, None)

    def sse_response(service: Service, row: dict[str, Any], after: int, cancel_on_disconnect: bool,
                     location: str | None) -> StreamingResponse:
        run_id = row["run_id"]

        async def events() -> AsyncIterator[bytes]:
            finished = False
            try:
                async for seq, event, data in service.engine.events(run_id, after):
                    yield _sse(event, data, seq)
                finished = True
            finally:
                if not finished and cancel_on_disconnect:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(service.engine.cancel([run_id], "interrupt"))

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no",
                   "Content-Location": run_path(row)}
        if location:
            headers["Location"] = location
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    async def stream(request: Request, body: RunCreate, thread_id: str | None) -> StreamingResponse:
        service, row = await create(request, body, thread_id, record_events=True)
        location = f"{run_path(row)}/stream" if thread_id is not None else None
        return sse_response(service, row, 0, body.on_disconnect == "cancel", location)

    @router.post("/threads/{thread_id}/runs/stream")
    async def stream_on_thread(thread_id: str, body: RunCreate, request: Request) -> StreamingResponse:
        return await stream(request, body, thread_id)

    @router.post("/runs/stream")
    async def stream_stateless(body: RunCreate, request: Request) -> StreamingResponse:
        return await stream(request, body, None)

    @router.post("/threads/{thread_id}/runs")
    async def create_run(thread_id: str, body: RunCreate, request: Request) -> dict[str, Any]:
        _, row = await create(request, body, thread_id, record_events=True)
        return Service.run_json(row)

    @router.post("/runs")
    async def create_stateless_run(body: RunCreate, request: Request) -> dict[str, Any]:
        _, row = await create(request, body, None, record_events=True)
        return Service.run_json(row)

    @router.post("/runs/batch")
    async def create_batch(bodies: list[RunCreate], request: Request) -> list[dict[str, Any]]:
        if len(bodies) > MAX_BATCH:
            raise HTTPException(422, f"at most {MAX_BATCH} runs per batch")
        return [Service.run_json((await create(request, body, None, record_events=True))[1])
                for body in bodies]

    @router.get("/threads/{thread_id}/runs")
    async def list_runs(thread_id: str, request: Request, limit: int = Query(10, ge=1, le=1000),
                        offset: int = Query(0, ge=0, le=MAX_OFFSET),
                        status: str | None = None) -> list[dict[str, Any]]:
        service = _service(request)
        await service.authorize(_owner(request), thread_id)
        async with service.pool.connection() as conn:
            rows = await (await conn.execute(
                "SELECT * FROM agent_runs WHERE thread_id = %s AND (%s::text IS NULL OR status = %s) "
                "ORDER BY seq DESC LIMIT %s OFFSET %s",
                (thread_id, status, status, limit, offset))).fetchall()
        return [Service.run_json(row) for row in rows]

    @router.get("/threads/{thread_id}/runs/{run_id}")
    async def get_run(thread_id: str, run_id: str, request: Request) -> dict[str, Any]:
        service = _service(request)
        await service.authorize(_owner(request), thread_id)
        return Service.run_json(await service.run_row(thread_id, run_id))

    @router.delete("/threads/{thread_id}/runs/{run_id}", status_code=204)
    async def delete_run(thread_id: str, run_id: str, request: Request) -> Response:
        service = _service(request)
        await service.authorize(_owner(request), thread_id)
        row = await service.run_row(thread_id, run_id)
        if row["status"] in ("pending", "running"):
            raise HTTPException(409, f"run {run_id} is {row['status']}: cancel it first")
        async with service.pool.connection() as conn:
            await conn.execute("DELETE FROM agent_runs WHERE run_id = %s", (run_id,))
        return Response(status_code=204)

    @router.get("/threads/{thread_id}/runs/{run_id}/join")
    async def join_run(thread_id: str, run_id: str, request: Request) -> Any:
        service = _service(request)
        await service.authorize(_owner(request), thread_id)
        await service.run_row(thread_id, run_id)
        try:
            return Service.outcome(await service.engine.wait(run_id))
        except RunReleased:
            raise HTTPException(503, "this replica is shutting down; join again") from None

    @router.get("/threads/{thread_id}/runs/{run_id}/stream")
    async def join_stream(thread_id: str, run_id: str, request: Request,
                          cancel_on_disconnect: bool = False) -> StreamingResponse:
        service = _service(request)
        await service.authorize(_owner(request), thread_id)
        row = await service.run_row(thread_id, run_id)
        last = request.headers.get("last-event-id", "0")
        after = int(last) if last.isdigit() else 0
        return sse_response(service, row, after, cancel_on_disconnect,
                            f"{run_path(row)}/stream")

    @router.post("/threads/{thread_id}/runs/{run_id}/cancel", status_code=202)
    async def cancel_run(thread_id: str, run_id: str, request: Request, wait: bool = False,
                         action: Literal["interrupt", "rollback"] = "interrupt") -> Response:
        service = _service(request)
        await service.authorize(_owner(request), thread_id)
        await service.run_row(thread_id, run_id)
        await service.engine.cancel([run_id], action)
        if wait:
            await service.engine.wait(run_id)
        return Response(status_code=202)

    @router.post("/runs/cancel", status_code=204)
    async def cancel_many(body: CancelMany, request: Request,
                          action: Literal["interrupt", "rollback"] = "interrupt") -> Response:
        service = _service(request)
        if body.thread_id is not None:
            await service.authorize(_owner(request), body.thread_id)
        async with service.pool.connection() as conn:
            rows = await (await conn.execute(
                "SELECT r.run_id FROM agent_runs r JOIN agent_threads t USING (thread_id) "
                "WHERE t.owner = %s AND r.status IN ('pending', 'running') "
                "AND (%s::text IS NULL OR r.thread_id = %s) "
                "AND (%s::text[] IS NULL OR r.run_id = ANY(%s)) "
                "AND (%s::text IS NULL OR r.status = %s)",
                (_owner(request), body.thread_id, body.thread_id, body.run_ids, body.run_ids,
                 body.status, body.status))).fetchall()
        await service.engine.cancel([r["run_id"] for r in rows], action)
        return Response(status_code=204)

    return router
