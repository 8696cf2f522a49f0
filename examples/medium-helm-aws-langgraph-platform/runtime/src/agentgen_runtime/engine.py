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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection, errors, sql
from psycopg.types.json import Jsonb

from .observability import (
    QUEUE_DEPTH,
    QUEUE_WAIT,
    RUNS_ABANDONED,
    RUNS_RETRIED,
)
from .settings import Settings

log = logging.getLogger("agentgen_runtime.engine")

CHANNEL = "agent_runs"
ACTIVE = ("pending", "running")
TERMINAL = ("success", "error", "timeout", "interrupted")
STRATEGIES = ("reject", "enqueue", "interrupt", "rollback")

# Idempotent migrations of the runs table (0.2 had run_id, thread_id, assistant_id, status,
# metadata, error, created_at, updated_at).
SCHEMA = """
ALTER TABLE agent_runs ALTER COLUMN thread_id DROP NOT NULL;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS seq bigserial;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS graph_id text;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS kwargs jsonb NOT NULL DEFAULT '{}';
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS multitask_strategy text NOT NULL DEFAULT 'enqueue';
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS record_events boolean NOT NULL DEFAULT false;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS attempt integer NOT NULL DEFAULT 0;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS worker text;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS lease_until timestamptz;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS started_at timestamptz;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS cancel text;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS output jsonb;
CREATE UNIQUE INDEX IF NOT EXISTS agent_runs_one_running ON agent_runs (thread_id)
    WHERE status = 'running';
CREATE INDEX IF NOT EXISTS agent_runs_pending ON agent_runs (seq) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS agent_runs_lease ON agent_runs (lease_until) WHERE status = 'running';
CREATE TABLE IF NOT EXISTS agent_run_events (
    run_id text NOT NULL REFERENCES agent_runs ON DELETE CASCADE,
    seq integer NOT NULL,
    event text NOT NULL,
    data jsonb,
    PRIMARY KEY (run_id, seq)
);
"""

# A pending run is claimable when its thread has no running run and no older pending one.
_CLAIM = sql.SQL("""
UPDATE agent_runs r SET status = 'running', worker = %(worker)s, attempt = r.attempt + 1,
    lease_until = now() + make_interval(secs => %(lease)s), started_at = now(), updated_at = now()
WHERE r.run_id IN (
    SELECT c.run_id FROM agent_runs c
    WHERE c.status = 'pending' {only}
      AND NOT EXISTS (SELECT 1 FROM agent_runs o
                      WHERE o.thread_id = c.thread_id AND o.status = 'running')
      AND NOT EXISTS (SELECT 1 FROM agent_runs o
                      WHERE o.thread_id = c.thread_id AND o.status = 'pending' AND o.seq < c.seq)
    ORDER BY c.seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING r.*, extract(epoch FROM now() - r.created_at) AS waited
""")
_CLAIM_ANY = _CLAIM.format(only=sql.SQL(""))
_CLAIM_ONE = _CLAIM.format(only=sql.SQL("AND c.run_id = %(only)s"))


class RunRejected(Exception):
    """multitask_strategy=reject on a busy thread (answered 409)."""


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
    task: asyncio.Task[Any] | None = None
    events: list[tuple[int, str, Any]] = field(default_factory=list)
    unflushed: list[tuple[int, str, Any]] = field(default_factory=list)
    cancel: str | None = None
    cancel_at: float | None = None
    started: bool = False
    finishing: bool = False  # its outcome is being recorded: too late to cancel
    done: bool = False


Executor = Callable[[dict[str, Any], Callable[[str, Any], None]], Awaitable[tuple[str, Any, str | None]]]


class Engine:
    """Runs as rows. `executor(row, emit)` runs one claimed run (emitting its stream events) and
    returns (status, output, error); cancellation arrives as asyncio cancellation of its task."""

    def __init__(self, settings: Settings, pool: Any, executor: Executor,
                 rollback: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self.settings, self.pool, self.executor, self.rollback = settings, pool, executor, rollback
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.local: dict[str, LocalRun] = {}
        self.signals: dict[str, asyncio.Event] = {}  # run id -> set on its events/completion
        self.wake = asyncio.Event()
        self.draining = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._listening = False
        self._check_cancel: set[str] = set()
        self.released: set[str] = set()  # runs this draining process handed back

    @property
    def lease(self) -> float:
        return self.settings.run_lease_seconds

    @property
    def free(self) -> int:
        return self.settings.max_concurrent_runs - sum(1 for r in self.local.values() if not r.done)

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._listen(), name="engine-listen"),
                       asyncio.create_task(self._work(), name="engine-work"),
                       asyncio.create_task(self._heartbeat(), name="engine-heartbeat"),
                       asyncio.create_task(self._reap(), name="engine-reap")]

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
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task

    # --- creating runs ----------------------------------------------------------------------
    async def create(self, *, run_id: str, thread_id: str | None, assistant_id: str, graph_id: str,
                     kwargs: dict[str, Any], metadata: dict[str, Any], strategy: str,
                     record_events: bool) -> dict[str, Any]:
        """Insert the run (applying the strategy on its thread), then claim it here if this process
        has capacity. Raises RunRejected."""
        cancelled: list[str] = []
        async with self.pool.connection() as conn, conn.transaction():
            if thread_id is not None:
                await conn.execute("SELECT 1 FROM agent_threads WHERE thread_id = %s FOR UPDATE",
                                   (thread_id,))
                active = await (await conn.execute(
                    "SELECT run_id, status FROM agent_runs WHERE thread_id = %s "
                    "AND status IN ('pending', 'running') ORDER BY seq", (thread_id,))).fetchall()
                if active and strategy == "reject":
                    raise RunRejected(f"thread {thread_id} already has a run in progress "
                                      f"(multitask_strategy=reject)")
                if active and strategy in ("interrupt", "rollback"):
                    cancelled = await self._cancel_rows(conn, [r["run_id"] for r in active], strategy)
            row = await (await conn.execute(
                # clock_timestamp(), not now() (the transaction's start): taken after the thread's
                # lock, so created_at orders a thread's runs as the engine takes them.
                "INSERT INTO agent_runs (run_id, thread_id, assistant_id, graph_id, status, metadata, "
                "kwargs, multitask_strategy, record_events, created_at, updated_at) "
                "VALUES (%s, %s, %s, %s, 'pending', %s, %s, %s, %s, clock_timestamp(), "
                "clock_timestamp()) RETURNING *",
                (run_id, thread_id, assistant_id, graph_id, Jsonb(metadata), Jsonb(kwargs), strategy,
                 record_events))).fetchone()
            for other in cancelled:
                await self._notify(conn, f"c:{other}")
            await self._notify(conn, "q")
        if self.free > 0 and not self.draining:
            claimed = await self._claim(only=run_id)
            if claimed:
                return claimed[0]
        return row

    # --- claiming and running ---------------------------------------------------------------
    async def _claim(self, only: str | None = None) -> list[dict[str, Any]]:
        limit = max(0, self.free)
        if limit == 0 or self.draining:
            return []
        query = _CLAIM_ONE if only is not None else _CLAIM_ANY
        try:
            async with self.pool.connection() as conn:
                rows = await (await conn.execute(query, {
                    "worker": self.worker, "lease": self.lease, "limit": limit, "only": only,
                })).fetchall()
        except errors.UniqueViolation:
            return []  # another process claimed a run of the same thread first
        for row in rows:
            QUEUE_WAIT.observe(float(row.pop("waited") or 0))
            if row["attempt"] > 1:
                RUNS_RETRIED.inc()
            self._spawn(row)
        return rows

    def _spawn(self, row: dict[str, Any]) -> None:
        run = LocalRun(row["run_id"])
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
        self._signal(run.run_id)
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
        except asyncio.CancelledError:
            action = run.cancel or "interrupt"
            if action == "release" or action == "lost":
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
                done = await (await conn.execute(
                    "UPDATE agent_runs SET status = %s, output = %s, error = %s, worker = NULL, "
                    "lease_until = NULL, cancel = NULL, updated_at = now() "
                    "WHERE run_id = %s AND worker = %s AND attempt = %s AND status = 'running' "
                    "RETURNING run_id",
                    (status, Jsonb(output), error, run.run_id, self.worker, row["attempt"]))).fetchone()
                if done is None:
                    log.warning("run %s: lease lost before it finished; its outcome is discarded",
                                run.run_id)
                await self._notify(conn, f"d:{run.run_id}")
                await self._notify(conn, "q")
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
        self._over(run)

    # --- events -----------------------------------------------------------------------------
    def _emit(self, run: LocalRun, event: str, data: Any) -> None:
        item = (len(run.events) + 1, event, data)
        run.events.append(item)
        run.unflushed.append(item)
        self._signal(run.run_id)

    async def _flush(self, run: LocalRun) -> None:
        if not run.unflushed:
            return
        batch, run.unflushed = run.unflushed, []
        async with self.pool.connection() as conn:
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO agent_run_events (run_id, seq, event, data) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING",
                    [(run.run_id, seq, event, Jsonb(data)) for seq, event, data in batch])
            await self._notify(conn, f"e:{run.run_id}")

    async def _flush_periodically(self, run: LocalRun) -> None:
        while True:
            await asyncio.sleep(0.05)
            try:
                await self._flush(run)
            except Exception:
                log.warning("run %s: events not flushed yet", run.run_id, exc_info=True)

    async def _finish_events(self, run: LocalRun, flusher: asyncio.Task[Any] | None) -> None:
        if flusher is None:
            return
        flusher.cancel()
        with contextlib.suppress(BaseException):
            await flusher
        for _ in range(3):
            try:
                await self._flush(run)
                return
            except Exception:  # noqa: BLE001
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
                run = self.local.get(run_id)
                if run is not None and not run.done and run.task is not None:
                    await asyncio.wait({run.task})
                if run_id in self.released:
                    raise RunReleased(run_id)
                row = await self.get(run_id)
                if row is None or row["status"] not in ACTIVE:
                    return row
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(signal.wait(), 1.0)
        finally:
            if run_id not in self.local:
                self.signals.pop(run_id, None)

    # --- cancelling -------------------------------------------------------------------------
    async def cancel(self, run_ids: list[str], action: str) -> list[str]:
        """Cancel pending and running runs (interrupt: kept as `interrupted`; rollback: deleted
        with their checkpoints). Returns the ids that were active."""
        async with self.pool.connection() as conn, conn.transaction():
            cancelled = await self._cancel_rows(conn, run_ids, action)
            for run_id in cancelled:
                await self._notify(conn, f"c:{run_id}")
        for run_id in cancelled:
            self._cancel_local(run_id, action)
        return cancelled

    async def _cancel_rows(self, conn: AsyncConnection, run_ids: list[str], action: str) -> list[str]:
        rows = await (await conn.execute(
            "SELECT run_id, status FROM agent_runs WHERE run_id = ANY(%s) "
            "AND status IN ('pending', 'running') FOR UPDATE", (run_ids,))).fetchall()
        pending = [r["run_id"] for r in rows if r["status"] == "pending"]
        running = [r["run_id"] for r in rows if r["status"] == "running"]
        if pending:
            if action == "rollback":
                await conn.execute("DELETE FROM agent_runs WHERE run_id = ANY(%s)", (pending,))
            else:
                await conn.execute("UPDATE agent_runs SET status = 'interrupted', updated_at = now() "
                                   "WHERE run_id = ANY(%s)", (pending,))
            for run_id in pending:
                await self._notify(conn, f"d:{run_id}")
        if running:
            await conn.execute("UPDATE agent_runs SET cancel = %s WHERE run_id = ANY(%s)",
                               (action, running))
        return pending + running

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
        from .db import connect

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
            self.wake.set()
        elif kind in ("d", "e"):
            self._signal(run_id)
        elif kind == "c":
            self.wake.set()
            self._check_cancel.add(run_id)

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

    async def _heartbeat(self) -> None:
        """Renew the leases of this process' runs; a run whose lease was taken over is stopped
        here (its outcome would be discarded anyway); cancel requests missed by LISTEN land here."""
        while True:
            await asyncio.sleep(self.lease / 3)
            self._give_up_wedged()
            ids = [r.run_id for r in self.local.values() if not r.done]
            if not ids:
                continue
            try:
                async with self.pool.connection() as conn:
                    rows = await (await conn.execute(
                        "UPDATE agent_runs SET lease_until = now() + make_interval(secs => %s) "
                        "WHERE run_id = ANY(%s) AND worker = %s AND status = 'running' "
                        "RETURNING run_id, cancel", (self.lease, ids, self.worker))).fetchall()
            except Exception as exc:  # noqa: BLE001
                log.warning("lease renewal failed (%s); retrying", exc)
                continue
            held = {row["run_id"]: row["cancel"] for row in rows}
            for run_id in ids:
                if run_id not in held:
                    log.warning("run %s: lease lost (another worker holds it); stopping here", run_id)
                    self._cancel_local(run_id, "lost")
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
        run_max_attempts; every process reaps (the UPDATE is idempotent)."""
        while True:
            await asyncio.sleep(min(5.0, self.lease / 2))
            try:
                async with self.pool.connection() as conn:
                    rows = await (await conn.execute(
                        "UPDATE agent_runs SET worker = NULL, lease_until = NULL, updated_at = now(), "
                        "status = CASE WHEN attempt >= %(max)s THEN 'error' ELSE 'pending' END, "
                        "error = CASE WHEN attempt >= %(max)s THEN 'abandoned after ' || attempt || "
                        "' attempts: the process running it stopped renewing its lease' END "
                        "WHERE status = 'running' AND lease_until < now() RETURNING run_id, status",
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
