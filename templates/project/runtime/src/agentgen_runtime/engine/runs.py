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
import concurrent.futures
import contextlib
import logging
import os
import queue
import socket
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection, errors
from psycopg.types.json import Jsonb

from .fencing import Fenced, is_fenced
from .observability import (
    LOOP_STALLS,
    QUEUE_DEPTH,
    QUEUE_WAIT,
    RUNS_ABANDONED,
    RUNS_FENCED,
    RUNS_RETRIED,
)
from .ownership import NOT_FOUND as THREAD_NOT_FOUND
from .settings import Settings

log = logging.getLogger("agentgen_runtime.engine")

CHANNEL = "agent_runs"
ACTIVE = ("pending", "running")
TERMINAL = ("success", "error", "timeout", "interrupted")
STRATEGIES = ("reject", "enqueue", "interrupt", "rollback")
RECENT_RUNS = 1024  # runs that ended in this process kept for their late waiters

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
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS not_before timestamptz;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS owner text;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS idempotency_key text;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS request_hash text;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS webhook_policy text;
CREATE UNIQUE INDEX IF NOT EXISTS agent_runs_idempotency ON agent_runs (coalesce(owner, ''), idempotency_key)
    WHERE idempotency_key IS NOT NULL;
UPDATE agent_runs r SET owner = t.owner FROM agent_threads t
    WHERE r.owner IS NULL AND r.thread_id = t.thread_id AND r.status IN ('pending', 'running');
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

# A pending run is claimable when its thread has no running run and no older pending one, and its
# delay (after_seconds) has passed. A delayed run holds its thread's later runs behind it.
_CLAIM = """
UPDATE agent_runs r SET status = 'running', worker = %(worker)s, attempt = r.attempt + 1,
    lease_until = now() + make_interval(secs => %(lease)s), started_at = now(), updated_at = now()
WHERE r.run_id IN (
    SELECT c.run_id FROM agent_runs c
    WHERE c.status = 'pending' AND (c.not_before IS NULL OR c.not_before <= now())
      AND NOT EXISTS (SELECT 1 FROM agent_runs o
                      WHERE o.thread_id = c.thread_id AND o.status = 'running')
      AND NOT EXISTS (SELECT 1 FROM agent_runs o
                      WHERE o.thread_id = c.thread_id AND o.status = 'pending' AND o.seq < c.seq)
    ORDER BY c.seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING r.*, extract(epoch FROM now() - r.created_at) AS waited
"""

# Creating a run is one call (one round trip): the thread's row is locked, the strategy applied to
# its active runs (each statement of a PL/pgSQL function sees what committed before it, so the runs
# a concurrent creator inserted before it released the lock are seen), the run inserted: `running`,
# claimed by the caller (attempt 1, its lease), when nothing is ahead of it on its thread and the
# caller passed its worker (it has room), `pending` otherwise. created_at is clock_timestamp(), taken
# after the lock (not the transaction's start): it orders a thread's runs as the engine takes them.
# Notifies `c:<id>` for each cancelled running run, `d:<id>` for each cancelled pending one and
# `q:<worker>` when the run is pending. SQLSTATE AGR01: rejected (multitask_strategy=reject);
# AGR02: a resume (command.resume) sent while a run is in progress on the thread (enqueue); AGR03:
# an Idempotency-Key already used (within the window) for a request with another body. A key used
# for the same request returns the run it created (RunCreate's `idempotency`).
FUNCTIONS = [
    # (0.3's signature: replaced by the one with the idempotency key and the webhook policy, whose
    # defaults still answer a call in the old form)
    "DROP FUNCTION IF EXISTS agent_run_create(text, text, text, text, jsonb, jsonb, text, boolean, "
    "text, text, double precision, text, boolean, jsonb)", """
CREATE OR REPLACE FUNCTION agent_run_cancel(p_ids text[], p_action text)
RETURNS SETOF text LANGUAGE plpgsql AS $fn$
DECLARE
    v_pending text[];
    v_running text[];
BEGIN
    SELECT coalesce(array_agg(run_id) FILTER (WHERE status = 'pending'), '{}'),
           coalesce(array_agg(run_id) FILTER (WHERE status = 'running'), '{}')
      INTO v_pending, v_running
      FROM (SELECT run_id, status FROM agent_runs
            WHERE run_id = ANY(p_ids) AND status IN ('pending', 'running') FOR UPDATE) active;
    IF p_action = 'rollback' THEN
        DELETE FROM agent_runs WHERE run_id = ANY(v_pending);
    ELSE
        UPDATE agent_runs SET status = 'interrupted', updated_at = now()
        WHERE run_id = ANY(v_pending);
    END IF;
    UPDATE agent_runs SET cancel = p_action WHERE run_id = ANY(v_running);
    PERFORM pg_notify('agent_runs', 'd:' || id) FROM unnest(v_pending) id;
    PERFORM pg_notify('agent_runs', 'c:' || id) FROM unnest(v_running) id;
    RETURN QUERY SELECT unnest(v_pending || v_running);
END
$fn$
""", """
CREATE OR REPLACE FUNCTION agent_run_create(
    p_run_id text, p_thread_id text, p_assistant_id text, p_graph_id text, p_metadata jsonb,
    p_kwargs jsonb, p_strategy text, p_record_events boolean, p_worker text, p_caller text,
    p_lease double precision, p_owner text, p_create_thread boolean, p_thread_filter jsonb,
    p_idempotency_key text DEFAULT NULL, p_request_hash text DEFAULT NULL,
    p_idempotency_window double precision DEFAULT 86400, p_webhook_policy text DEFAULT NULL)
RETURNS SETOF agent_runs LANGUAGE plpgsql AS $fn$
DECLARE
    v_active text[] := '{}';
    v_claim boolean;
    v_delay double precision := coalesce((p_kwargs ->> 'after_seconds')::double precision, 0);
    v_prior agent_runs;
BEGIN
    IF p_idempotency_key IS NOT NULL THEN
        -- one creator of a key at a time (until it commits); a key older than the window is free
        PERFORM pg_advisory_xact_lock(hashtextextended(coalesce(p_owner, '') || '/' || p_idempotency_key, 7));
        UPDATE agent_runs SET idempotency_key = NULL
        WHERE coalesce(owner, '') = coalesce(p_owner, '') AND idempotency_key = p_idempotency_key
          AND created_at < clock_timestamp() - make_interval(secs => p_idempotency_window);
        SELECT * INTO v_prior FROM agent_runs
        WHERE coalesce(owner, '') = coalesce(p_owner, '') AND idempotency_key = p_idempotency_key;
        IF FOUND THEN
            IF v_prior.request_hash IS DISTINCT FROM p_request_hash THEN
                RAISE EXCEPTION 'Idempotency-Key % was used for another request (its run is %)',
                    p_idempotency_key, v_prior.run_id USING ERRCODE = 'AGR03';
            END IF;
            RETURN NEXT v_prior;  -- the first request's run: created once
            RETURN;
        END IF;
    END IF;
    IF p_thread_id IS NOT NULL THEN
        -- the caller's thread, locked (see ownership.py): AGT04 when it is not the caller's; one it
        -- creates starts with the run's metadata (as on the Platform)
        PERFORM agent_thread_for_run(p_thread_id, p_owner, p_graph_id, p_assistant_id,
            p_create_thread, p_metadata, p_thread_filter);
        SELECT coalesce(array_agg(run_id), '{}') INTO v_active FROM agent_runs
        WHERE thread_id = p_thread_id AND status IN ('pending', 'running');
        IF cardinality(v_active) > 0 AND p_strategy = 'reject' THEN
            RAISE EXCEPTION 'thread % already has a run in progress (multitask_strategy=reject)',
                p_thread_id USING ERRCODE = 'AGR01';
        ELSIF cardinality(v_active) > 0 AND p_strategy = 'enqueue'
              AND coalesce(p_kwargs -> 'command' ? 'resume', false) THEN
            -- a resume queued behind a run would answer an interrupt that run may already have
            -- resumed: the client must learn that its decision was not applied
            RAISE EXCEPTION 'thread % already has a run in progress: resume the interrupt it '
                'leaves once it ends', p_thread_id USING ERRCODE = 'AGR02';
        ELSIF cardinality(v_active) > 0 AND p_strategy IN ('interrupt', 'rollback') THEN
            PERFORM agent_run_cancel(v_active, p_strategy);
        END IF;
    END IF;
    v_claim := p_worker IS NOT NULL AND cardinality(v_active) = 0 AND v_delay <= 0;
    IF NOT v_claim THEN
        PERFORM pg_notify('agent_runs', 'q:' || p_caller);
    END IF;
    RETURN QUERY INSERT INTO agent_runs (
        run_id, thread_id, assistant_id, graph_id, status, metadata, kwargs, multitask_strategy,
        record_events, created_at, updated_at, worker, attempt, lease_until, started_at,
        not_before, owner, idempotency_key, request_hash, webhook_policy)
    VALUES (p_run_id, p_thread_id, p_assistant_id, p_graph_id,
        CASE WHEN v_claim THEN 'running' ELSE 'pending' END, p_metadata, p_kwargs, p_strategy,
        p_record_events, clock_timestamp(), clock_timestamp(),
        CASE WHEN v_claim THEN p_worker END, CASE WHEN v_claim THEN 1 ELSE 0 END,
        CASE WHEN v_claim THEN now() + make_interval(secs => p_lease) END,
        CASE WHEN v_claim THEN clock_timestamp() END,
        CASE WHEN v_delay > 0 THEN clock_timestamp() + make_interval(secs => v_delay) END,
        p_owner, p_idempotency_key, p_request_hash, p_webhook_policy)
    RETURNING *;
END
$fn$
"""]
_CREATE = ("SELECT * FROM agent_run_create(%(run_id)s, %(thread_id)s, %(assistant_id)s, "
           "%(graph_id)s, %(metadata)s, %(kwargs)s, %(strategy)s, %(record_events)s, %(worker)s, "
           "%(caller)s, %(lease)s, %(owner)s, %(create_thread)s, %(thread_filter)s, "
           "%(idempotency_key)s, %(request_hash)s, %(idempotency_window)s, %(webhook_policy)s)")

# A run's outcome, fenced by the worker and attempt holding it; wakes its remote readers, and the
# workers when a run of the same thread waits for this one.
_FINISH = """
WITH done AS (
    UPDATE agent_runs SET status = %(status)s, output = %(output)s, error = %(error)s, worker = NULL,
        lease_until = NULL, cancel = NULL, updated_at = now()
    WHERE run_id = %(run_id)s AND worker = %(worker)s AND attempt = %(attempt)s
      AND status = 'running'
    RETURNING *)
SELECT done.*, pg_notify(%(channel)s, 'd:' || done.run_id)::text AS notified,
    (SELECT pg_notify(%(channel)s, 'q')::text FROM agent_runs p
     WHERE p.thread_id = done.thread_id AND p.status = 'pending' LIMIT 1) AS woken
FROM done
"""


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


# the engine's running rows among some ids, locked for their renewal (those free only, or waiting)
_LOCK_HELD = ("SELECT run_id FROM agent_runs WHERE run_id = ANY(%s) AND worker = %s "
              "AND status = 'running' ORDER BY run_id FOR NO KEY UPDATE")
_LOCK_HELD_FREE = _LOCK_HELD + " SKIP LOCKED"


class LeaseKeeper(threading.Thread):
    """Renews the leases of the engine's runs from a thread of its own, on a connection of its own,
    so that a node blocking the event loop (blocking code in an async node) does not let its run's
    lease lapse while its process is alive: a second execution would follow. A process that is
    truly frozen (SIGSTOP, a paused VM) renews nothing: its runs are taken over, and fencing keeps
    it from writing when it wakes. The keeper also reports loop stalls (log naming the graph and
    node, metric); it stops renewing once the loop has been stalled for longer than a run may last
    (run_timeout_seconds), so that a wedged process cannot hold runs forever.

    A run row can be held by a write of the run still open (a checkpoint transaction whose commit
    a blocked loop has not sent yet: the fence's share lock, see fencing.py). The reaper skips such
    a row (its holder is writing); the renewal renews the free rows at once, and for each held one
    a waiter (a thread and a connection of its own) queues for the row, so that it is first when
    the write commits, and counts the lease from then: locking before computing the lease (one
    UPDATE would compute it before waiting, and renew into the past)."""

    WAITERS = 4  # rows waited for at once (each a connection while it waits)

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name="agentgen-lease-keeper", daemon=True)
        self.engine, self.loop = engine, loop
        self.loop_thread = threading.get_ident()
        self._stopping = threading.Event()
        self._conn: Any = None
        self._spares: queue.SimpleQueue[Any] = queue.SimpleQueue()  # the waiters' connections
        self._waiting: set[str] = set()
        self._waiting_lock = threading.Lock()
        self._stall_reported = False

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=5)

    def run(self) -> None:
        settings = self.engine.settings
        tick = min(0.25, settings.run_lease_seconds / 6)
        last_renewal = time.monotonic()
        renewal: concurrent.futures.Future[None] | None = None
        renewer = concurrent.futures.ThreadPoolExecutor(1, "agentgen-lease-renewal")
        waiters = concurrent.futures.ThreadPoolExecutor(self.WAITERS, "agentgen-lease-wait")
        try:
            while not self._stopping.wait(tick):
                stalled = time.monotonic() - self.engine.loop_beat
                self._watch_loop(stalled)
                if time.monotonic() - last_renewal < settings.run_lease_seconds / 3:
                    continue
                if renewal is not None and not renewal.done():
                    continue  # (the database is slow to answer)
                last_renewal = time.monotonic()
                if stalled > settings.run_timeout_seconds:
                    log.error("event loop stalled for %.0f s (longer than run_timeout_seconds): "
                              "leases no longer renewed, the runs will be taken over", stalled)
                    continue
                renewal = renewer.submit(self._renew_or_retry, waiters)
        finally:
            renewer.shutdown(wait=False, cancel_futures=True)
            waiters.shutdown(wait=False, cancel_futures=True)

    def _renew_or_retry(self, waiters: concurrent.futures.Executor) -> None:
        try:
            self._renew(waiters)
        except Exception as exc:  # noqa: BLE001 - the database is down: the next tick retries
            log.warning("lease renewal failed (%s); retrying", exc)
            self._close(self._conn)
            self._conn = None

    def _connect(self) -> Any:
        import psycopg

        settings = self.engine.settings
        conn = psycopg.connect(settings.database_conninfo(), autocommit=True,
                               connect_timeout=max(1, int(settings.db_connect_timeout)))
        # frozen between its two statements, this process would hold its rows out of reach of
        # the reaper (which skips locked rows): the server ends such a transaction
        conn.execute("SELECT set_config('idle_in_transaction_session_timeout', %s, false)",
                     (f"{int(self.engine.lease * 1000)}ms",))
        return conn

    def _renew(self, waiters: concurrent.futures.Executor) -> None:
        ids = [r.run_id for r in list(self.engine.local.values()) if not r.done]
        if not ids:
            return
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        worker = self.engine.worker
        with self._conn.transaction():
            ours = {row[0] for row in self._conn.execute(
                "SELECT run_id FROM agent_runs WHERE run_id = ANY(%s) AND worker = %s "
                "AND status = 'running'", (ids, worker)).fetchall()}
            free = [row[0] for row in self._conn.execute(_LOCK_HELD_FREE, (ids, worker))]
            held = self._renew_locked(self._conn, free)
        self._report([run_id for run_id in ids if run_id not in ours or run_id in free], held)
        for run_id in ours.difference(free):  # held by a write under way
            with self._waiting_lock:
                if run_id in self._waiting:
                    continue
                self._waiting.add(run_id)
            waiters.submit(self._wait_and_renew, run_id)

    def _wait_and_renew(self, run_id: str) -> None:
        conn = None
        try:
            try:
                conn = self._spares.get_nowait()
            except queue.Empty:
                conn = self._connect()
            with conn.transaction():
                locked = [row[0] for row in conn.execute(
                    _LOCK_HELD, ([run_id], self.engine.worker)).fetchall()]
                held = self._renew_locked(conn, locked)
            self._report([run_id], held)
            self._spares.put(conn)
        except Exception as exc:  # noqa: BLE001 - the next renewal tries again
            log.warning("lease renewal of run %s failed (%s); retrying", run_id, exc)
            self._close(conn)
        finally:
            with self._waiting_lock:
                self._waiting.discard(run_id)

    def _renew_locked(self, conn: Any, ids: list[str]) -> dict[str, str | None]:
        """Renew the leases of rows this transaction locked, counted from now: renewed id -> its
        cancel request."""
        if not ids:
            return {}
        return {row[0]: row[1] for row in conn.execute(
            "UPDATE agent_runs SET lease_until = statement_timestamp() + make_interval(secs => %s) "
            "WHERE run_id = ANY(%s) RETURNING run_id, cancel", (self.engine.lease, ids))}

    def _report(self, ids: list[str], held: dict[str, str | None]) -> None:
        if ids:
            with contextlib.suppress(RuntimeError):  # the loop closed: the process is stopping
                self.loop.call_soon_threadsafe(self.engine._renewed, ids, held)

    @staticmethod
    def _close(conn: Any) -> None:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _watch_loop(self, stalled: float) -> None:
        if stalled <= self.engine.settings.loop_stall_warn_seconds:
            self._stall_reported = False
            return
        if self._stall_reported:
            return
        self._stall_reported = True
        LOOP_STALLS.inc()
        graph, node, where = blocking_node(sys._current_frames().get(self.loop_thread))
        log.warning("event loop blocked for %.1f s by graph %s, node %s (%s): blocking code in an "
                    "async node stalls every request and run of this process; await it or run it "
                    "in a thread (asyncio.to_thread)", stalled, graph or "?", node or "?", where,
                    extra={"fields": {"event": "loop_stall", "graph_id": graph, "node": node,
                                      "where": where}})


def blocking_node(frame: Any) -> tuple[str | None, str | None, str]:
    """(graph id, node name, innermost code location) of what the loop thread is running: the node
    is named by the nearest LangGraph task config on the stack (metadata langgraph_node)."""
    where = "unknown"
    if frame is not None:
        where = f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
    while frame is not None:
        config = frame.f_locals.get("config")
        metadata = config.get("metadata") if isinstance(config, dict) else None
        if isinstance(metadata, dict) and metadata.get("langgraph_node"):
            return metadata.get("graph_id"), str(metadata["langgraph_node"]), where
        frame = frame.f_back
    return None, None, where


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
            return await (await conn.execute(_CREATE, params)).fetchone()
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
                rows = await (await conn.execute(_CLAIM, {
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
                done = await (await conn.execute(_FINISH, {
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
