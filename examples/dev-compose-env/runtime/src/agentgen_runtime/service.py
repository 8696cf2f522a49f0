"""What the routers share: the graphs bound to the checkpointer and the store, the run engine and
its executor (how one claimed run is run, streamed and recorded), the threads' data layer
(`ownership.Threads`, scoped by owner) and the answer shapes of the LangGraph Platform API."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections.abc import Callable
from typing import Any, ClassVar

from fastapi import HTTPException
from langgraph.types import Command, StateUpdate
from psycopg import OperationalError
from psycopg_pool import PoolTimeout

from .auth.handlers import AuthUser
from .engine.fencing import FENCE, Fenced, is_fenced
from .engine.runs import Engine, Transient
from .errors import dependency_failure
from .graphs import Graph
from .models import RunCreate, ThreadCount, ThreadCreate, ThreadSearch
from .observability import RUN_DURATION, RUNS_ACTIVE, record_usage
from .observability import thread_id as thread_context
from .ownership import Assistants, Crons, Scope, Threads, assistant_not_found, checkpoint_config
from .settings import Settings
from .streaming.protocol import is_protocol_run, run_protocol
from .streaming.stream import jsonable, stream_run
from .surfaces.store import OWNER
from .surfaces.webhooks import Policy, check_webhook


class UnknownInterruptError(Exception):
    """A strict resume (`strict_resume`) answers no interrupt waiting on the thread."""


def _interrupt_ids(resume: Any) -> set[str] | None:
    """The interrupt ids a resume answers when it maps ids to answers (as LangGraph reads a dict
    whose keys are all interrupt ids), else None."""
    if isinstance(resume, dict) and resume and all(
            isinstance(k, str) and len(k) == 32 and all(c in "0123456789abcdef" for c in k)
            for k in resume):
        return set(resume)
    return None


async def refuse_unknown_resume(graph: Any, config: dict[str, Any], command: Command) -> None:
    """Raise UnknownInterruptError, before anything runs, when the command resumes no waiting
    interrupt (none waits, or it names one that does not)."""
    if command.resume is None:
        return
    state = await graph.aget_state(config)
    waiting = {i.id for task in state.tasks for i in task.interrupts}
    if not waiting:
        raise UnknownInterruptError("the thread has no interrupt waiting for a resume")
    named = _interrupt_ids(command.resume)
    if named is not None and named - waiting:
        raise UnknownInterruptError(
            f"no interrupt {', '.join(sorted(named - waiting))} is waiting on the thread "
            f"(waiting: {', '.join(sorted(waiting))})")


def contains(value: Any, wanted: Any) -> bool:
    """Whether `value` contains `wanted` as jsonb's @> reads it: objects by their keys, arrays by
    their elements (each wanted element in some element), scalars by equality."""
    if isinstance(wanted, dict):
        return isinstance(value, dict) and all(k in value and contains(value[k], v)
                                               for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(value, list) and all(any(contains(v, w) for v in value) for w in wanted)
    return value == wanted


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]")


def extract_path(data: Any, path: str) -> Any:
    """`values.messages[-1].content` read from `data`; None where the path leads nowhere."""
    for name, index in _PATH_PART.findall(path):
        try:
            data = data[int(index)] if index else data[name]
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    return data


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


def with_assistant(body: RunCreate, assistant: dict[str, Any]) -> RunCreate:
    """The run as its assistant configures it (recorded with the run, so any replica runs it
    alike): the assistant's config under the run's (`configurable` merged key by key), and its
    context under the run's."""
    config, context = assistant.get("config") or {}, assistant.get("context") or {}
    if not config and not context:
        return body
    merged = {**config, **body.config,
              "configurable": {**(config.get("configurable") or {}),
                               **(body.config.get("configurable") or {})}}
    update: dict[str, Any] = {"config": merged}
    if context:
        update["context"] = {**context, **(body.context or {})}
    return body.model_copy(update=update)


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
        self.threads = Threads(pool)
        self.assistants = Assistants(pool)
        self.crons = Crons(pool)
        self.webhooks = Policy()  # langgraph.json `webhooks` (set by the app)
        self.limiter: Any = None  # the requests' rate limiter (set by the app): crons' ticks count

    webhooks_disabled = False  # langgraph.json http.disable_webhooks

    async def check_webhook(self, url: str | None) -> None:
        """A webhook a run or a cron is created with: 422 unless it may be called."""
        if url is not None and self.webhooks_disabled:
            raise HTTPException(422, "webhook: webhooks are disabled on this server (langgraph.json "
                                     "http.disable_webhooks)")
        if url is not None:
            await check_webhook(self.webhooks, self.settings, url)

    # --- assistants -------------------------------------------------------------------------
    def system_graph(self, assistant_id: str) -> Graph | None:
        """The graph whose system assistant `assistant_id` is (its id, or the graph's id)."""
        for graph in self.graphs.values():
            if assistant_id in (graph.assistant_id, graph.graph_id):
                return graph
        return None

    def refuse_system(self, assistant_id: str) -> None:
        if self.system_graph(assistant_id) is not None:
            raise HTTPException(409, f"assistant {assistant_id} is the system assistant of a graph of "
                                     "langgraph.json: it changes with langgraph.json (create an "
                                     "assistant from the graph to configure it)")

    async def assistant(self, scope: Scope, assistant_id: str) -> tuple[Graph, dict[str, Any]]:
        """The graph an assistant runs and the assistant (a system one, or the caller's own)."""
        graph = self.system_graph(assistant_id)
        if graph is not None:
            return graph, self.assistant_json_of(graph)
        row = await self.assistants.get(scope, assistant_id)
        if row is None:
            raise assistant_not_found(assistant_id)
        if row["graph_id"] not in self.graphs:
            raise HTTPException(404, f"assistant {assistant_id}: its graph {row['graph_id']!r} is no "
                                     "longer in langgraph.json")
        return self.graphs[row["graph_id"]], self.assistant_json(row)

    @staticmethod
    def assistant_json(row: dict[str, Any], version: bool = False) -> dict[str, Any]:
        """A created assistant (or one of its versions) as the Platform answers it."""
        answer = {key: row[key] for key in ("assistant_id", "graph_id", "name", "description",
                                            "config", "context", "metadata", "version")}
        answer["created_at"] = _iso(row["created_at"])
        if not version:
            answer["updated_at"] = _iso(row["updated_at"])
        return answer

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
    def assistant_json_of(graph: Graph) -> dict[str, Any]:
        return {"assistant_id": graph.assistant_id, "graph_id": graph.graph_id, "name": graph.graph_id,
                "description": graph.description, "config": {}, "context": {},
                "metadata": {"created_by": "system"},
                "version": 1, "created_at": "1970-01-01T00:00:00+00:00",
                "updated_at": "1970-01-01T00:00:00+00:00"}

    # --- threads ----------------------------------------------------------------------------
    def graph_of(self, graph_id: str | None) -> Any:
        """The bound graph a thread's state is read through (the first one before its first run)."""
        return self.bound.get(graph_id or "", next(iter(self.bound.values())))

    # The keys the Platform answers a thread with: `get`/`search` the whole thread, `create`/
    # `update` without its error and interrupts, `copy` without its values either.
    THREAD_KEYS: ClassVar[dict[str, tuple[str, ...]]] = {
        "full": (), "written": ("error", "interrupts"), "copied": ("error", "interrupts", "values")}

    def thread_json(self, row: dict[str, Any], state: Any = None, kind: str = "full") -> dict[str, Any]:
        status = row.get("status") or "idle"
        interrupts = {}
        if state is not None:
            interrupts = {task.id: jsonable(task.interrupts) for task in state.tasks if task.interrupts}
            if interrupts and status != "busy":
                status = "interrupted"
        thread = {"thread_id": row["thread_id"], "created_at": _iso(row["created_at"]),
                  "updated_at": _iso(row["updated_at"]), "state_updated_at": _iso(row["updated_at"]),
                  "metadata": row["metadata"], "status": status, "config": {},
                  "values": jsonable(state.values) if state is not None else None,
                  "interrupts": interrupts, "error": None}
        for key in self.THREAD_KEYS[kind]:
            thread.pop(key)
        return thread

    async def create_thread(self, scope: Scope, thread_id: str, body: ThreadCreate) -> dict[str, Any]:
        """The caller's new thread (or its existing one, if_exists=do_nothing), with its
        `supersteps` applied when it is new; a thread whose supersteps fail is not kept."""
        graph = None
        if body.supersteps:
            graph_id = body.metadata.get("graph_id")
            if graph_id not in self.bound:
                raise HTTPException(422, "supersteps: need metadata.graph_id (graph_id), one of "
                                    + ", ".join(sorted(self.bound)))
            graph = self.bound[graph_id]
        row = await self.threads.create(scope, thread_id, body.metadata, body.if_exists,
                                        body.ttl.model_dump() if body.ttl else None)
        if row.pop("new", False) and graph is not None:
            steps = [[StateUpdate(u.values, u.as_node) for u in step.updates]
                     for step in body.supersteps or ()]
            try:
                await graph.abulk_update_state(checkpoint_config(thread_id, None), steps)
            except Exception as exc:
                await self.threads.delete(scope, thread_id)
                if dependency_failure(exc) is not None:
                    raise
                raise HTTPException(422, f"supersteps: {type(exc).__name__}: {exc}") from None
        return row

    async def threads_matching(self, scope: Scope, body: ThreadSearch | ThreadCount, *,
                               limit: int, offset: int) -> list[tuple[dict[str, Any], Any]]:
        """The caller's threads the search names, each with its state: filtered in SQL, then (for
        `values`) by the state's values, read thread by thread in the search's order."""
        search = body if isinstance(body, ThreadSearch) else ThreadSearch(metadata=body.metadata)
        sort_by = "updated_at" if search.sort_by == "state_updated_at" else search.sort_by

        async def page(size: int, start: int) -> list[dict[str, Any]]:
            return await self.threads.search(
                scope, metadata=body.metadata, ids=search.ids, status=body.status,
                sort_by=sort_by, descending=search.sort_order != "asc", limit=size, offset=start)

        async def with_state(row: dict[str, Any]) -> tuple[dict[str, Any], Any]:
            return row, await self.state(row["thread_id"], row["metadata"].get("graph_id"))

        if not body.values:
            return [await with_state(row) for row in await page(limit, offset)]
        found: list[tuple[dict[str, Any], Any]] = []
        start, skipped = 0, 0
        while len(found) < limit:
            rows = await page(100, start)
            for row in rows:
                item = await with_state(row)
                if not contains(jsonable(item[1].values), body.values):
                    continue
                if skipped < offset:
                    skipped += 1
                elif len(found) < limit:
                    found.append(item)
            if len(rows) < 100:
                break
            start += 100
        return found

    async def count_threads(self, scope: Scope, body: ThreadCount) -> int:
        if not body.values:
            return await self.threads.count(scope, body.metadata, body.status)
        return len(await self.threads_matching(scope, body, limit=2**31 - 1, offset=0))

    def thread_found(self, row: dict[str, Any], state: Any, search: ThreadSearch) -> dict[str, Any]:
        """A thread as a search answers it: its `select`ed fields, and what `extract` names."""
        thread = self.thread_json(row, state)
        answer = {k: v for k, v in thread.items() if k in search.select} if search.select else thread
        if search.extract:
            answer["extracted"] = {alias: extract_path(thread, path)
                                   for alias, path in search.extract.items()}
        return answer

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
            "checkpoint_id": (state.config or {}).get("configurable", {}).get("checkpoint_id"),
            "parent_checkpoint_id": (state.parent_config or {}).get("configurable", {}).get("checkpoint_id"),
            "interrupts": jsonable(state.interrupts),
        }

    # --- runs -------------------------------------------------------------------------------
    def run_arguments(self, body: RunCreate, thread_id: str | None, run_id: str) -> tuple[Any, dict]:
        config = dict(body.config)
        configurable = dict(config.get("configurable") or {})
        if isinstance(configurable.get("langgraph_auth_user"), dict):  # as on the Platform: ctx.user
            configurable["langgraph_auth_user"] = AuthUser(configurable["langgraph_auth_user"])
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
        owner = OWNER.set(row.get("owner"))  # whose store the graph reads and writes
        RUNS_ACTIVE.labels(graph_id).inc()
        try:
            graph = await self.runnable(graph_id, config, stateful)
            if (body.strict_resume or self.settings.strict_resume) and stateful \
                    and isinstance(run_input, Command):
                await refuse_unknown_resume(graph, config, run_input)
            async with asyncio.timeout(self.settings.run_timeout_seconds):
                if row["record_events"] and is_protocol_run(row["kwargs"]):
                    output = await run_protocol(graph, run_input, config,
                                                self.invoke_options(body, graph_id, stateful), emit)
                elif row["record_events"]:
                    output = await stream_run(graph, run_input, config,
                                              self.invoke_options(body, graph_id, stateful), body, emit)
                else:
                    output = jsonable(await graph.ainvoke(
                        run_input, config, **self.invoke_options(body, graph_id, stateful)))
            if stateful and not isinstance(output, dict):
                output = jsonable((await graph.aget_state(config)).values)
            # a run paused at interrupt() ended well (`success`, as on the Platform): the thread
            # is `interrupted`; a run's `interrupted` means it was cancelled
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
            OWNER.reset(owner)
            RUNS_ACTIVE.labels(graph_id).dec()
            if token is not None:
                thread_context.reset(token)
        RUN_DURATION.labels(graph_id, status).observe(time.perf_counter() - started)
        return status, output, error

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

    @staticmethod
    def run_json(row: dict[str, Any]) -> dict[str, Any]:
        return {"run_id": row["run_id"], "thread_id": row["thread_id"],
                "assistant_id": row["assistant_id"], "status": row["status"],
                "metadata": row["metadata"], "created_at": _iso(row["created_at"]),
                "updated_at": _iso(row["updated_at"]),
                "multitask_strategy": row["multitask_strategy"], "kwargs": row["kwargs"],
                "langsmith_session_name": None}  # runs are not traced to LangSmith by this server

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


