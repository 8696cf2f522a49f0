"""The lease keeper: a thread of its own that renews the leases of a process's runs while its event
loop may be blocked, and reports loop stalls. Its guarantees: LeaseKeeper's docstring."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import sys
import threading
import time
from typing import Any

from ..observability import LOOP_STALLS

log = logging.getLogger("agentgen_runtime.engine")  # (the engine's log, as before the split)


# the engine's running rows among some ids, locked for their renewal (those free only, or waiting)
LOCK_HELD = ("SELECT run_id FROM agent_runs WHERE run_id = ANY(%s) AND worker = %s "
              "AND status = 'running' ORDER BY run_id FOR NO KEY UPDATE")
LOCK_HELD_FREE = LOCK_HELD + " SKIP LOCKED"


class LeaseKeeper(threading.Thread):
    """Renews the leases of the engine's runs from a thread of its own, on a connection of its own,
    so that a node blocking the event loop (blocking code in an async node) does not let its run's
    lease lapse while its process is alive: a second execution would follow. A process that is
    truly frozen (SIGSTOP, a paused VM) renews nothing: its runs are taken over, and fencing keeps
    it from writing when it wakes. The keeper also reports loop stalls (log naming the graph and
    node, metric); it stops renewing once the loop has been stalled for longer than a run may last
    (run_timeout_seconds), so that a wedged process cannot hold runs forever.

    A run row can be held by a write of the run still open (a checkpoint transaction whose commit
    a blocked loop has not sent yet: the fence's share lock, see engine/fencing.py). The reaper skips such
    a row (its holder is writing); the renewal renews the free rows at once, and for each held one
    a waiter (a thread and a connection of its own) queues for the row, so that it is first when
    the write commits, and counts the lease from then: locking before computing the lease (one
    UPDATE would compute it before waiting, and renew into the past)."""

    WAITERS = 4  # rows waited for at once (each a connection while it waits)

    def __init__(self, engine: Any, loop: asyncio.AbstractEventLoop) -> None:  # (an Engine)
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
            free = [row[0] for row in self._conn.execute(LOCK_HELD_FREE, (ids, worker))]
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
                    LOCK_HELD, ([run_id], self.engine.worker)).fetchall()]
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
