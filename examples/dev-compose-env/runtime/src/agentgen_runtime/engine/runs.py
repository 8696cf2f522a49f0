"""The run engine: every run is a row of `agent_runs` before it starts, executed by a worker of any
process under a lease, one run per thread at a time across every process.

- **Exclusivity.** A run is claimed (pending -> running) only when its thread has no running run and
  no older pending one; a partial unique index (one `running` row per thread) makes a lost race an
  error instead of a second run. Runs of a thread start in the order they were created.
- **Multitask strategies** are applied when a run is created, under a row lock on its thread, so
  concurrent creators through different processes see each other: `reject` (409 while the thread
  has a pending or running run), `enqueue` (the default: the run waits its turn), `interrupt` (the
  active runs are cancelled and kept as `interrupted`), `rollback` (the active runs are cancelled,
  deleted and their checkpoints removed).
- **Leases.** A claimed run holds a lease that its process renews every third of it; a run whose
  lease lapsed (its process died or lost the database) goes back to `pending` with its attempt
  counted and another worker resumes it from its last checkpoint, or it is marked `error` after
  `run_max_attempts`. Every write of a run's outcome is fenced by the worker that holds it.
- **Fast path.** The process that receives a run claims it itself when it has capacity: no queue
  hop. Otherwise (or when the thread is busy) any worker picks it up: LISTEN/NOTIFY wakes them, and
  they poll every second in case a notification was lost.
- **Events.** Runs that are streamed (or joined as a stream) record their events in
  `agent_run_events`, numbered per run: any process can replay them (`Last-Event-ID`) and follow a
  run another process executes.

Why not a job library: procrastinate and pgqueuer were evaluated (notes in the runtime README); both
run jobs in their own worker loop (no claim by the receiving request, the fast path), and neither
has a per-key exclusivity that also admits the interrupt/rollback strategies (cancelling the holder
and starting the next run of that key once it stopped), nor run-level fencing of results.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection, errors
from psycopg.types.json import Jsonb

from ..observability import (
    QUEUE_DEPTH,
    QUEUE_WAIT,
    RUNS_ABANDONED,
    RUNS_FENCED,
    RUNS_RETRIED,
)
from ..ownership import NOT_FOUND as THREAD_NOT_FOUND
from ..settings import Settings
from .fencing import Fenced, is_fenced
from .leases import LeaseKeeper
from .sql import ACTIVE, CHANNEL, CLAIM, CREATE, FINISH

log = logging.getLogger("agentgen_runtime.engine")

RECENT_RUNS = 1024  # runs that ended in this process kept for their late waiters


class RunRejected(Exception):
    """multitask_strategy=reject on a busy thread, or a resume queued behind a run in progress
    (answered 409)."""


class IdempotencyConflict(Exception):
    """An Idempotency-Key already used for another request (answered 422)."""


class ThreadNotFound(LookupError):
    """The run's thread is not the caller's, or does not exist (answered 404)."""


class Transient(Exception):
    """The run failed because the database was unavailable: it goes back to the queue (its input
    is kept) instead of ending as an error."""


class RunReleased(Exception):
    """The run was handed back to the queue by this (shutting down) process: whoever waits for it
    here must reconnect elsewhere."""


@dataclass
class LocalRun:
    """A run this process executes: its task, its events so far (seq, event, data), and a
    condition readers wait on."""

    run_id: str
    attempt: int = 0
    task: asyncio.Task[Any] | None = None
    events: list[tuple[int, str, Any]] = field(default_factory=list)
    unflushed: list[tuple[int, str, Any]] = field(default_factory=list)
    cancel: str | None = None
    cancel_at: float | None = None  # when its cancellation was asked for
    cancelled_at: float = 0.0  # when its task was last cancelled (see Engine._recancel)
    started: bool = False
    finishing: bool = False  # its outcome is being recorded: too late to cancel
    stopping: bool = False  # its cancellation arrived and is being handled (rollback, release)
    flushed_up: bool = False  # its event flusher is asked to stop (after one last flush)
    done: bool = False
    final: dict[str, Any] | None = None  # its row as this process recorded its outcome
    final_known: bool = False  # final is set (None: the run was rolled back, its row deleted)


Executor = Callable[[dict[str, Any], Callable[[str, Any], None]], Awaitable[tuple[str, Any, str | None]]]


PULSE_SECONDS = 0.1
FLUSH_SECONDS = 0.05  # how often a run's new events are written (readers elsewhere follow them)
# A cancelled run whose task is still running this long after a cancellation was delivered gets it
# again (see Engine._recancel).
RECANCEL_SECONDS = 0.5


async def cancel_tasks(tasks: list[asyncio.Task[Any]], within: float = 5.0) -> None:
    """Cancel tasks and wait (at most `within` seconds) until they end, cancelling again the ones
    that go on: on Python 3.11 a cancellation that arrives while a task is being handed what it
    waited for (asyncio.wait_for, Condition.wait: psycopg_pool's getconn under load) can be
    swallowed, and a loop that swallowed it would run forever."""
    deadline = time.monotonic() + within
    pending = {t for t in tasks if not t.done()}
    while pending and time.monotonic() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_SECONDS,
                                                                 max(0.0, deadline - time.monotonic())))
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: a loop's failure at shutdown is not worth a warning
    if pending:
        log.warning("%d task(s) still running %.0f s after they were cancelled", len(pending), within)


class Engine:
    """Runs as rows. `executor(row, emit)` runs one claimed run (emitting its stream events) and
    returns (status, output, error); cancellation arrives as asyncio cancellation of its task."""

    def __init__(self, settings: Settings, pool: Any, executor: Executor,
                 rollback: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self.settings, self.pool, self.executor, self.rollback = settings, pool, executor, rollback
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.local: dict[str, LocalRun] = {}
        self.signals: dict[str, asyncio.Event] = {}  # run id -> set on its events/completion
        # thread id -> the queues of the thread streams following it here (state updates)
        self.thread_watchers: dict[str, set[asyncio.Queue[str]]] = {}
        self.wake = asyncio.Event()
        self.draining = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._listening = False
        self._check_cancel: set[str] = set()
        self.released: set[str] = set()  # runs this draining process handed back
        self._reserved = 0  # runs being inserted as this process' own (create)
        # Whether a pending run may be claimable: a finished run wakes the claimer only then.
        self._pending_hint = True
        # Runs that ended here lately, for waiters that come after the end (no read needed).
        self._recent: OrderedDict[str, LocalRun] = OrderedDict()
        self._keeper: LeaseKeeper | None = None
        self.loop_beat = time.monotonic()  # last time the event loop turned (see _pulse)
        self.on_webhook: Callable[[], None] = lambda: None  # a run with a webhook ended somewhere

    @property
    def lease(self) -> float:
        return self.settings.run_lease_seconds

    @property
    def free(self) -> int:
        return (self.settings.max_concurrent_runs - self._reserved
                - sum(1 for r in self.local.values() if not r.done))

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._listen(), name="engine-listen"),
                       asyncio.create_task(self._work(), name="engine-work"),
                       asyncio.create_task(self._pulse(), name="engine-pulse"),
                       asyncio.create_task(self._reap(), name="engine-reap")]
        self._keeper = LeaseKeeper(self, asyncio.get_running_loop())
        self._keeper.start()

    async def release_after(self, grace: float) -> None:
        """Stop claiming; give local runs `grace` seconds, then hand the rest back to the queue
        (pending, for another process; their waiting requests are dropped, and their clients
        reconnect elsewhere)."""
        self.draining = True
        running = [r.task for r in self.local.values() if r.task is not None and not r.done]
        if running:
            log.info("waiting up to %.0f s for %d run(s)", grace, len(running))
            await asyncio.wait(running, timeout=grace)
        left = [r for r in self.local.values() if r.task is not None and not r.done]
        for run in left:
            self.released.add(run.run_id)
            run.cancel = "release"
            run.task.cancel()  # type: ignore[union-attr]
        if not left:
            return
        await asyncio.wait([r.task for r in left], timeout=5)  # type: ignore[misc]
        try:
            async with self.pool.connection() as conn:
                await conn.execute(
                    "UPDATE agent_runs SET status = 'pending', worker = NULL, lease_until = NULL, "
                    "updated_at = now() WHERE worker = %s AND status = 'running'", (self.worker,))
                await self._notify(conn, "q")
            log.info("handed %d run(s) back to the queue", len(left))
        except Exception as exc:  # noqa: BLE001 - their leases lapse instead
            log.warning("could not hand runs back (%s); their leases will lapse", exc)
        for run in left:
            self._signal(run.run_id)

    async def stop(self, grace: float) -> None:
        """release_after(grace), then stop the background loops."""
        await self.release_after(grace)
        if self._keeper is not None:
            self._keeper.stop()
        await cancel_tasks(self._tasks)

    # --- creating runs ---------------------------------------------------------------------
    async def create(self, *, run_id: str, thread_id: str | None, assistant_id: str, graph_id: str,
                     kwargs: dict[str, Any], metadata: dict[str, Any], strategy: str,
                     record_events: bool, owner: str | None = None,
                     create_thread: bool = False,
                     thread_filter: dict[str, Any] | None = None,
                     idempotency: tuple[str, str] | None = None,
                     webhook_policy: str | None = None) -> dict[str, Any]:
        """Insert the run on `owner`'s thread (created first with `create_thread`; one that passes
        `thread_filter`, custom auth's), applying the strategy on it. When nothing is ahead of it on
        its thread and this process has room, it is inserted already claimed by this process and
        starts at once (no queue hop, nobody woken); otherwise it is pending and the workers are
        woken. With `idempotency` (key, the request's hash) a key this owner used within the window
        for the same request returns that request's run instead (its `run_id` is not `run_id`).
        Raises RunRejected, ThreadNotFound, IdempotencyConflict."""
        here = self._reserve()
        try:
            async with self.pool.connection() as conn:
                row = await self._insert(conn, self._params(
                    run_id=run_id, thread_id=thread_id, assistant_id=assistant_id,
                    graph_id=graph_id, kwargs=kwargs, metadata=metadata, strategy=strategy,
                    record_events=record_events, worker=self.worker if here else None,
                    caller=self.worker, owner=owner, create_thread=create_thread,
                    thread_filter=thread_filter, idempotency=idempotency,
                    webhook_policy=webhook_policy))
        finally:
            if here:
                self._reserved -= 1
        if row["run_id"] != run_id:  # the run an earlier request with the same key created
            return row
        if row["status"] == "running":
            QUEUE_WAIT.observe(0.0)
            self._spawn(row)
        else:  # its thread is busy, this process full or the run delayed: claimed when a run ends
            self._pending_hint = True  # or its delay has passed, here or elsewhere
            if self.free > 0 and not self.draining:
                self.wake.set()
            delay = kwargs.get("after_seconds") or 0
            if delay > 0:  # (every process also polls each second)
                asyncio.get_running_loop().call_later(delay, self._wake_for_pending)
        return row

    async def keyed(self, owner: str | None, key: str) -> bool:
        """Whether `owner` created a run with this Idempotency-Key within the window (a retry)."""
        async with self.pool.connection() as conn:
            return await (await conn.execute(
                "SELECT 1 FROM agent_runs WHERE coalesce(owner, '') = coalesce(%s, '') "
                "AND idempotency_key = %s AND created_at >= now() - make_interval(secs => %s)",
                (owner, key, self.settings.idempotency_window_seconds))).fetchone() is not None

    async def queue(self, conn: AsyncConnection, *, run_id: str, thread_id: str | None,
                    assistant_id: str, graph_id: str, kwargs: dict[str, Any],
                    metadata: dict[str, Any], strategy: str, owner: str,
                    create_thread: bool = False, webhook_policy: str | None = None) -> dict[str, Any]:
        """Insert a pending run on `conn`, inside its caller's transaction (the run exists if and
        only if that transaction commits); every process is woken when it commits. Raises
        RunRejected, ThreadNotFound (the caller's transaction is then aborted: use a savepoint)."""
        return await self._insert(conn, self._params(
            run_id=run_id, thread_id=thread_id, assistant_id=assistant_id, graph_id=graph_id,
            kwargs=kwargs, metadata=metadata, strategy=strategy, record_events=False, worker=None,
            caller="", owner=owner, create_thread=create_thread, thread_filter=None,
            webhook_policy=webhook_policy))

    def _params(self, *, kwargs: dict[str, Any], metadata: dict[str, Any],
                thread_filter: dict[str, Any] | None, idempotency: tuple[str, str] | None = None,
                **values: Any) -> dict[str, Any]:
        """agent_run_create's parameters."""
        key, digest = idempotency or (None, None)
        return {"webhook_policy": None, **values, "kwargs": Jsonb(kwargs),
                "metadata": Jsonb(metadata),
                "thread_filter": None if thread_filter is None else Jsonb(thread_filter),
                "lease": self.lease, "idempotency_key": key, "request_hash": digest,
                "idempotency_window": self.settings.idempotency_window_seconds}

    @staticmethod
    async def _insert(conn: AsyncConnection, params: dict[str, Any]) -> dict[str, Any]:
        try:
            return await (await conn.execute(CREATE, params)).fetchone()
        except errors.DatabaseError as exc:
            if exc.sqlstate in ("AGR01", "AGR02"):
                raise RunRejected(exc.diag.message_primary) from None
            if exc.sqlstate == "AGR03":
                raise IdempotencyConflict(exc.diag.message_primary) from None
            if exc.sqlstate == THREAD_NOT_FOUND:
                raise ThreadNotFound(params["thread_id"]) from None
            raise

    def _wake_for_pending(self) -> None:
        self._pending_hint = True
        self.wake.set()

    def _reserve(self) -> bool:
        """Hold a place for a run this process is about to insert as its own."""
        if self.draining or self.free <= 0:
            return False
        self._reserved += 1
        return True

    # --- claiming and running ---------------------------------------------------------------
    async def _claim(self) -> list[dict[str, Any]]:
        limit = max(0, self.free)
        if limit == 0 or self.draining:
            return []
        try:
            async with self.pool.connection() as conn:
                rows = await (await conn.execute(CLAIM, {
                    "worker": self.worker, "lease": self.lease, "limit": limit})).fetchall()
        except errors.UniqueViolation:
            return []  # another process claimed a run of the same thread first
        if len(rows) < limit:
            self._pending_hint = False  # nothing else claimable now; a notification says when
        for row in rows:
            QUEUE_WAIT.observe(float(row.pop("waited") or 0))
            if row["attempt"] > 1:
                RUNS_RETRIED.inc()
            self._spawn(row)
        return rows

    def _spawn(self, row: dict[str, Any]) -> None:
        run = LocalRun(row["run_id"], row["attempt"])
        self.local[run.run_id] = run
        run.task = asyncio.create_task(self._execute(run, row), name=f"run-{run.run_id}")
        run.task.add_done_callback(lambda _: self._forget(run))

    def _forget(self, run: LocalRun) -> None:
        """A run's task ended: if it could not record its outcome, its lease lapses and another
        worker resumes it (this process stops renewing it)."""
        if not run.done:
            self._over(run)

    def _over(self, run: LocalRun) -> None:
        """The run is over in this process: no longer renewed, its readers and the claimer woken."""
        run.done = True
        self.local.pop(run.run_id, None)
        self._recent[run.run_id] = run
        while len(self._recent) > RECENT_RUNS:
            self._recent.popitem(last=False)
        self._signal(run.run_id)
        if self._pending_hint:
            self.wake.set()

    async def _execute(self, run: LocalRun, row: dict[str, Any]) -> None:
        status: str
        output: Any = None
        error: str | None = None
        run.started = True
        flusher = None
        try:
            if run.cancel is not None:  # cancelled before it started
                raise asyncio.CancelledError
            if row["record_events"]:
                run.events = await self._stored_events(run.run_id)  # earlier attempts' events
                flusher = asyncio.create_task(self._flush_periodically(run))
            status, output, error = await self.executor(row, lambda e, d: self._emit(run, e, d))
        except Fenced:
            run.stopping = True
            self._fenced_off(run)
            await self._finish_events(run, flusher)
            self._over(run)
            return
        except asyncio.CancelledError:
            run.stopping = True  # no further cancellation: what follows is the cancellation's work
            action = run.cancel or "interrupt"
            if action in ("release", "lost", "fenced"):
                await self._finish_events(run, flusher)
                self._over(run)
                return
            status, error = "interrupted", None
            if action == "rollback":
                await self._finish_events(run, flusher)
                try:
                    await self._rolled_back(run, row)
                    return
                except Exception:
                    log.exception("run %s: rollback failed; kept as interrupted", run.run_id)
                    error = "rollback failed; the run was interrupted instead"
        except Transient as exc:
            log.warning("run %s: database unavailable (%s); back to the queue", run.run_id, exc)
            await self._finish_events(run, flusher)
            await self._requeue(run)
            return
        except Exception as exc:
            log.exception("run %s failed", run.run_id)
            status, error = "error", f"{type(exc).__name__}: {exc}"
        run.finishing = True
        await self._finish_events(run, flusher)
        try:
            async with self.pool.connection() as conn:
                done = await (await conn.execute(FINISH, {
                    "status": status, "output": Jsonb(output), "error": error, "run_id": run.run_id,
                    "worker": self.worker, "attempt": row["attempt"], "channel": CHANNEL,
                })).fetchone()
            if done is None:
                log.warning("run %s: lease lost before it finished; its outcome is discarded",
                            run.run_id)
            else:
                del done["notified"], done["woken"]
                run.final, run.final_known = done, True
        except Exception:
            log.exception("run %s: could not record its outcome; it will be resumed", run.run_id)
        finally:
            self._over(run)

    async def _requeue(self, run: LocalRun) -> None:
        """Hand a run back (pending, attempt counted) once the database answers; if it does not
        within a lease, the lease lapses and the reaper does it."""
        try:
            deadline = time.monotonic() + self.lease
            while time.monotonic() < deadline:
                try:
                    async with self.pool.connection() as conn:
                        await conn.execute(
                            "UPDATE agent_runs SET status = 'pending', worker = NULL, "
                            "lease_until = NULL, updated_at = now() "
                            "WHERE run_id = %s AND worker = %s AND status = 'running'",
                            (run.run_id, self.worker))
                        await self._notify(conn, "q")
                    return
                except Exception:  # noqa: BLE001 - still down
                    await asyncio.sleep(0.5)
        finally:
            self._over(run)

    async def _rolled_back(self, run: LocalRun, row: dict[str, Any]) -> None:
        await self.rollback(row)
        async with self.pool.connection() as conn:
            await conn.execute("DELETE FROM agent_runs WHERE run_id = %s AND worker = %s",
                               (run.run_id, self.worker))
            await self._notify(conn, f"d:{run.run_id}")
            await self._notify(conn, "q")
        run.final_known = True
        self._over(run)

    def _fenced_off(self, run: LocalRun) -> None:
        """A write of this attempt was refused: another worker holds the run (this process stalled
        or lost the database past its lease). It stops here without writing anything more."""
        if run.cancel == "fenced":
            return
        run.cancel = "fenced"
        RUNS_FENCED.inc()
        log.warning("run %s: attempt %d fenced off (another worker holds its lease); it stops "
                    "here without writing", run.run_id, run.attempt,
                    extra={"fields": {"run_id": run.run_id, "attempt": run.attempt,
                                      "event": "run_fenced"}})

    # --- events -----------------------------------------------------------------------------
    def _emit(self, run: LocalRun, event: str, data: Any) -> None:
        item = (len(run.events) + 1, event, data)
        run.events.append(item)
        run.unflushed.append(item)
        self._signal(run.run_id)

    async def _flush(self, run: LocalRun) -> None:
        if not run.unflushed:
            return
        if run.cancel == "fenced":
            run.unflushed = []
            return
        batch, run.unflushed = run.unflushed, []
        async with self.pool.connection() as conn:
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO agent_run_events (run_id, seq, event, data) "
                    "VALUES (agent_fence(%s, %s, %s), %s, %s, %s) ON CONFLICT DO NOTHING",
                    [(run.run_id, run.attempt, run.run_id, seq, event, Jsonb(data))
                     for seq, event, data in batch])
            await self._notify(conn, f"e:{run.run_id}")

    async def _flush_periodically(self, run: LocalRun) -> None:
        """Flushes the run's events every FLUSH_SECONDS until `run.flushed_up` (set by
        _finish_events): stopped by a flag, not by cancellation, which Python 3.11 can swallow
        while a flush waits for a pooled connection (see cancel_tasks)."""
        while not run.flushed_up:
            await asyncio.sleep(FLUSH_SECONDS)
            if run.flushed_up:
                return
            try:
                await self._flush(run)
            except Exception as exc:
                if is_fenced(exc):
                    self._fenced_off(run)
                    if run.task is not None and not run.finishing:
                        run.task.cancel()
                    return
                log.warning("run %s: events not flushed yet", run.run_id, exc_info=True)

    async def _finish_events(self, run: LocalRun, flusher: asyncio.Task[Any] | None) -> None:
        """The run's last events, flushed after any flush under way (events land in order)."""
        if flusher is None:
            return
        run.flushed_up = True
        if not (await asyncio.wait({flusher}, timeout=self.lease))[0]:
            await cancel_tasks([flusher])  # a flush stuck for a whole lease: the lease is lost
        for _ in range(3):
            try:
                await self._flush(run)
                return
            except Exception as exc:  # noqa: BLE001
                if is_fenced(exc):
                    self._fenced_off(run)
                    return
                await asyncio.sleep(0.5)

    async def _stored_events(self, run_id: str, after: int = 0) -> list[tuple[int, str, Any]]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(
                "SELECT seq, event, data FROM agent_run_events WHERE run_id = %s AND seq > %s "
                "ORDER BY seq", (run_id, after))).fetchall()
        return [(r["seq"], r["event"], r["data"]) for r in rows]

    async def events(self, run_id: str, after: int = 0) -> AsyncIterator[tuple[int, str, Any]]:
        """A run's events after `after`, live until the run ends (from this process' memory when it
        executes the run, from the database otherwise)."""
        signal = self.signals.setdefault(run_id, asyncio.Event())
        while True:
            signal.clear()
            run = self.local.get(run_id)
            if run is not None:
                new = [e for e in run.events if e[0] > after]
                finished = run.done
            else:
                new = await self._stored_events(run_id, after)
                finished = False
                if not new:
                    row = await self.get(run_id)
                    finished = row is None or row["status"] not in ACTIVE
                    if finished:  # the last events may have landed after the read
                        new = await self._stored_events(run_id, after)
            for item in new:
                yield item
                after = item[0]
            if finished and not new:
                return
            if not new:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(signal.wait(), 0.5 if self._listening else 0.2)

    def _signal(self, run_id: str) -> None:
        signal = self.signals.get(run_id)
        if signal is not None:
            signal.set()

    # --- waiting, reading -------------------------------------------------------------------
    async def get(self, run_id: str) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            return await (await conn.execute("SELECT * FROM agent_runs WHERE run_id = %s",
                                             (run_id,))).fetchone()

    async def wait(self, run_id: str) -> dict[str, Any] | None:
        """The run's row once it is no longer pending or running (None: deleted, e.g. rolled back).
        Callers bound it with asyncio.timeout when they need to."""
        signal = self.signals.setdefault(run_id, asyncio.Event())
        try:
            while True:
                signal.clear()
                run = self.local.get(run_id) or self._recent.get(run_id)
                if run is not None and not run.done and run.task is not None:
                    await asyncio.wait({run.task})
                if run_id in self.released:
                    raise RunReleased(run_id)
                if run is not None and run.final_known:  # it ended here: no need to read it
                    return run.final
                row = await self.get(run_id)
                if row is None or row["status"] not in ACTIVE:
                    return row
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(signal.wait(), 1.0)
        finally:
            if run_id not in self.local:
                self.signals.pop(run_id, None)

    # --- thread streams ----------------------------------------------------------------------
    @contextlib.contextmanager
    def watch_thread(self, thread_id: str) -> Iterator[asyncio.Queue[str]]:
        """A queue that gets the thread's id each time its state is updated (by any process)."""
        queue: asyncio.Queue[str] = asyncio.Queue()
        self.thread_watchers.setdefault(thread_id, set()).add(queue)
        try:
            yield queue
        finally:
            watchers = self.thread_watchers.get(thread_id, set())
            watchers.discard(queue)
            if not watchers:
                self.thread_watchers.pop(thread_id, None)

    async def state_updated(self, thread_id: str) -> None:
        """Tell every process' thread streams that the thread's state was updated."""
        async with self.pool.connection() as conn:
            await self._notify(conn, f"s:{thread_id}")

    # --- cancelling -------------------------------------------------------------------------
    async def cancel(self, run_ids: list[str], action: str) -> list[str]:
        """Cancel pending and running runs (interrupt: kept as `interrupted`; rollback: deleted
        with their checkpoints). Returns the ids that were active."""
        async with self.pool.connection() as conn:
            rows = await (await conn.execute("SELECT agent_run_cancel(%s, %s) AS run_id",
                                             (run_ids, action))).fetchall()
        cancelled = [r["run_id"] for r in rows]
        for run_id in cancelled:
            self._cancel_local(run_id, action)
        return cancelled

    def _cancel_local(self, run_id: str, action: str) -> None:
        run = self.local.get(run_id)
        if run is not None and run.task is not None and not run.done and run.cancel is None:
            run.cancel, run.cancel_at = action, time.monotonic()
            # A task cancelled before its first step could not handle it; one recording its
            # outcome has finished.
            if run.started and not run.finishing:
                run.task.cancel()

    # --- background loops -------------------------------------------------------------------
    async def _notify(self, conn: AsyncConnection, payload: str) -> None:
        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))

    async def _listen(self) -> None:
        """LISTEN on a connection of its own; reconnects after failures (the pollers cover the gap)."""
        from ..db import connect

        while True:
            try:
                conn = await connect(self.settings)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._listening = True
                    self.wake.set()
                    async for note in conn.notifies():
                        self._on_notify(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                self._listening = False
                log.warning("LISTEN connection lost (%s); polling until it is back", exc)
                await asyncio.sleep(1)

    def _on_notify(self, payload: str) -> None:
        kind, _, run_id = payload.partition(":")
        if kind == "q":
            if run_id != self.worker:  # a run this process queued itself: it knows already
                self._wake_for_pending()
        elif kind in ("d", "e"):
            self._signal(run_id)
        elif kind == "s":  # a thread's state was updated (run_id is the thread's id here)
            for queue in self.thread_watchers.get(run_id, ()):
                queue.put_nowait(run_id)
        elif kind == "c":
            self.wake.set()
            self._check_cancel.add(run_id)
        elif kind == "w":
            self.on_webhook()

    async def _work(self) -> None:
        """Claim runs while this process has capacity: on notifications, and every second."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 1.0)
            self.wake.clear()
            if self._check_cancel:
                await self._apply_cancels()
            if self.draining:
                continue
            try:
                while self.free > 0 and await self._claim():
                    pass
            except Exception as exc:  # noqa: BLE001 - the database is down: retried next tick
                log.debug("claim failed: %s", exc)

    async def _apply_cancels(self) -> None:
        ids, self._check_cancel = list(self._check_cancel & self.local.keys()), set()
        if not ids:
            return
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(
                "SELECT run_id, cancel FROM agent_runs WHERE run_id = ANY(%s) AND worker = %s",
                (ids, self.worker))).fetchall()
        for row in rows:
            if row["cancel"]:
                self._cancel_local(row["run_id"], row["cancel"])

    async def _pulse(self) -> None:
        """Mark that the event loop turns (the lease keeper thread reads it to detect stalls), and
        deliver again the cancellations runs did not act on."""
        while True:
            self.loop_beat = time.monotonic()
            self._recancel()
            await asyncio.sleep(PULSE_SECONDS)

    def _recancel(self) -> None:
        """A cancelled run still running RECANCEL_SECONDS after its cancellation was delivered is
        cancelled again: on Python 3.11 asyncio can swallow a cancellation (see cancel_tasks), and
        the client that cancelled (or the run that rolled it back and waits behind it) must not
        wait for the run to end on its own."""
        now = time.monotonic()
        for run in self.local.values():
            if (run.cancel is not None and run.cancel_at is not None and run.started
                    and not (run.stopping or run.finishing or run.done)
                    and run.task is not None and not run.task.done()
                    and now - max(run.cancel_at, run.cancelled_at) > RECANCEL_SECONDS):
                run.cancelled_at = now
                run.task.cancel()

    def _renewed(self, ids: list[str], held: dict[str, str | None]) -> None:
        """On the loop, after the keeper renewed leases: a run whose lease another worker took
        over stops here (its writes would be fenced off anyway); cancel requests missed by LISTEN
        land here."""
        self._give_up_wedged()
        for run_id in ids:
            run = self.local.get(run_id)
            if run is None or run.done or run.finishing:
                continue  # (finishing: its outcome is being recorded, by a fenced statement)
            if run_id not in held:
                self._fenced_off(run)
                if run.task is not None and run.started and not run.finishing:
                    run.task.cancel()
            elif held[run_id]:
                self._cancel_local(run_id, held[run_id])

    def _give_up_wedged(self) -> None:
        """A run whose task has not ended long after it was cancelled stops being renewed here: its
        lease lapses and the reaper hands it on (its late outcome is fenced by attempt)."""
        limit = max(10.0, 2 * self.lease)
        for run in list(self.local.values()):
            if run.cancel_at is not None and not run.done and time.monotonic() - run.cancel_at > limit:
                log.error("run %s: still running %.0f s after it was cancelled; handing it on",
                          run.run_id, limit)
                self._over(run)

    async def _reap(self) -> None:
        """Runs whose lease lapsed go back to pending (attempt counted), or to error after
        run_max_attempts; every process reaps (the UPDATE is idempotent). A row a write of the
        run holds (the fence's share lock) is skipped: its holder is writing, and its lease keeper
        waits to renew behind that write."""
        while True:
            await asyncio.sleep(min(5.0, self.lease / 2))
            try:
                async with self.pool.connection() as conn:
                    rows = await (await conn.execute(
                        "UPDATE agent_runs SET worker = NULL, lease_until = NULL, updated_at = now(), "
                        "status = CASE WHEN attempt >= %(max)s THEN 'error' ELSE 'pending' END, "
                        "error = CASE WHEN attempt >= %(max)s THEN 'abandoned after ' || attempt || "
                        "' attempts: the process running it stopped renewing its lease' END "
                        "WHERE run_id IN (SELECT run_id FROM agent_runs WHERE status = 'running' "
                        "AND lease_until < now() FOR NO KEY UPDATE SKIP LOCKED) "
                        "RETURNING run_id, status",
                        {"max": self.settings.run_max_attempts})).fetchall()
                    for row in rows:
                        if row["status"] == "error":
                            RUNS_ABANDONED.inc()
                            await self._notify(conn, f"d:{row['run_id']}")
                        log.warning("run %s: lease lapsed; %s", row["run_id"],
                                    "abandoned" if row["status"] == "error" else "back in the queue")
                    if rows:
                        await self._notify(conn, "q")
                    depth = await (await conn.execute(
                        "SELECT count(*) AS n FROM agent_runs WHERE status = 'pending'")).fetchone()
                    QUEUE_DEPTH.set(depth["n"])
            except Exception as exc:  # noqa: BLE001
                log.debug("reaper: %s", exc)
