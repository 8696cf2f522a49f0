"""PostgreSQL: the connection pool (sized from the settings) and the checkpointer/store schema."""

from __future__ import annotations

import asyncio
import functools
import select
import time
import types
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection, OperationalError
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .engine.fencing import FENCE, FencingCursor, fenced_statement
from .settings import Settings


class GuardedPool(AsyncConnectionPool):
    """A pool that fails fast during an outage, and replaces the connections a server closed
    without failing a request.

    - A request waiting for a connection stops waiting as soon as a connection attempt made
      after it began fails (the server is down): its 503 comes at once, not after the timeout.
    - Once a connection could not be had, further requests fail at once (PoolTimeout: answered
      503) while one request at a time probes; the first success ends the outage. Without this
      every step of every request would wait the whole timeout again, and requests would queue
      for many timeouts.
    - A connection is checked before use without a round trip in the common case: a server that
      restarted or terminated the connection leaves its socket readable (an idle pooled connection
      receives nothing otherwise); such a connection, and one idle for more than
      CHECK_IDLE_SECONDS (a silently cut network path), gets an empty query. When one fails, every
      idle connection is checked at once and the broken ones replaced, and the request takes the
      next good one (psycopg_pool's own check would back off a second or more per broken
      connection: a restart cost requests a 503)."""

    _outage = False
    _probing = False

    @property
    def in_outage(self) -> bool:
        return self._outage

    async def getconn(self, timeout: float | None = None) -> AsyncConnection:  # noqa: ASYNC109 - the pool's API
        if self._outage:
            if self._probing:
                raise PoolTimeout("postgres is unavailable (an earlier attempt timed out)")
            self._probing = True
            try:
                conn = await self._checked(timeout)
            finally:
                self._probing = False
            self._outage = False
            return conn
        try:
            return await self._checked(timeout)
        except PoolTimeout:
            self._outage = True
            raise

    async def _checked(self, within: float | None) -> AsyncConnection:
        started = time.monotonic()
        deadline = started + (self.timeout if within is None else within)
        while True:
            # Wait in slices: a connection attempt refused meanwhile (the server is down) ends the
            # wait at once instead of after the whole timeout; a pool that is only busy keeps
            # the request waiting up to its timeout.
            try:
                conn = await super().getconn(min(WAIT_SLICE_SECONDS,
                                                  max(0.0, deadline - time.monotonic())))
            except PoolTimeout:
                if time.monotonic() >= deadline:
                    raise
                if _RefusalTrackingConnection.refused_at > started:
                    raise PoolTimeout("postgres is unavailable (a connection attempt failed: "
                                      f"{_RefusalTrackingConnection.reason})") from None
                continue
            now = time.monotonic()
            last = _handed_out.get(conn, 0.0)
            _handed_out[conn] = now
            if now - last <= CHECK_IDLE_SECONDS and not select.select([conn.fileno()], [], [], 0)[0]:
                return conn
            try:
                await conn.execute("")
                return conn
            except psycopg.Error:
                await self.putconn(conn)  # broken: the pool closes and replaces it
                await self.check()  # the others the server closed too


class _RefusalTrackingConnection(AsyncConnection):
    """Records when a new connection could not be made (and why): waiting requests then stop
    waiting for one (GuardedPool._checked)."""

    refused_at = 0.0
    reason = ""

    @classmethod
    async def connect(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().connect(*args, **kwargs)
        except psycopg.OperationalError as exc:
            cls.refused_at, cls.reason = time.monotonic(), " ".join(str(exc).split())[:200]
            raise


WAIT_SLICE_SECONDS = 0.25
# psycopg_pool retries a failed connection with an uncapped exponential backoff (1, 2, 4, 8, 16 s
# ...) until it gives up: after a 16 s outage its next attempt may come 15 s after the database is
# back, every request refused meanwhile. Giving up early bounds the gap between attempts (at most
# ~4 s): the next request then starts a fresh attempt at once, and the pool refills to its size.
RECONNECT_GIVE_UP_SECONDS = 8.0
# A pooled connection idle for longer than this is checked with a round trip before it is used.
CHECK_IDLE_SECONDS = 10.0
_handed_out: weakref.WeakKeyDictionary[AsyncConnection, float] = weakref.WeakKeyDictionary()


def create_pool(settings: Settings) -> AsyncConnectionPool:
    """A closed pool: `await pool.open()` it. `db_pool_size` connections are kept, and up to
    `db_pool_overflow` more are opened under load. Connections are checked before use (see
    GuardedPool), so a restarted database costs no failed request."""
    return GuardedPool(
        settings.database_conninfo(),
        min_size=settings.db_pool_size,
        max_size=settings.db_pool_size + settings.db_pool_overflow,
        open=False,
        timeout=settings.db_connect_timeout,
        reconnect_timeout=RECONNECT_GIVE_UP_SECONDS,
        connection_class=_RefusalTrackingConnection,
        kwargs=CONNECTION_KWARGS,
        configure=functools.partial(_end_stalled_transactions,
                                    settings.run_timeout_seconds + 2 * settings.run_lease_seconds),
        name="agent",
    )


async def _end_stalled_transactions(seconds: float, conn: AsyncConnection) -> None:
    """A transaction left open by a process that stopped turning (SIGSTOP, a paused VM, a loop
    blocked past run_timeout_seconds) is ended by the server: a run's write under way holds its run
    row (the fence's share lock), and no takeover happens while it does. Past run_timeout_seconds
    the process has given its runs up anyway (see engine.LeaseKeeper)."""
    await conn.execute("SELECT set_config('idle_in_transaction_session_timeout', %s, false)",
                       (f"{int(seconds * 1000)}ms",))


# What langgraph-checkpoint-postgres requires of its connections.
CONNECTION_KWARGS = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}


async def connect(settings: Settings) -> AsyncConnection:
    """One connection, for one-off commands (maintenance) that need no pool."""
    return await AsyncConnection.connect(
        settings.database_conninfo(), connect_timeout=max(1, int(settings.db_connect_timeout)),
        **CONNECTION_KWARGS)


async def lacks_extension(settings: Settings, name: str) -> bool | None:
    """Whether the database cannot provide extension `name` (None: it cannot be reached now)."""
    try:
        conn = await connect(settings)
    except psycopg.Error:
        return None
    async with conn:
        row = await (await conn.execute(
            "SELECT 1 AS found FROM pg_available_extensions WHERE name = %s", (name,))).fetchone()
    return row is None


# Threads whose newest checkpoint is older than a number of minutes.
IDLE_THREADS = """
    SELECT thread_id FROM checkpoints
    WHERE checkpoint_ns = ''
    GROUP BY thread_id
    HAVING max((checkpoint ->> 'ts')::timestamptz) < now() - make_interval(secs => %s)
"""
SWEEP_LOCK_KEY = 0x6167656E7467656F  # (the schema's lock key + 1: schema.py)


async def idle_threads(conn: AsyncConnection, minutes: float) -> list[str]:
    rows = await (await conn.execute(IDLE_THREADS, (float(minutes) * 60,))).fetchall()
    return [row["thread_id"] for row in rows]


async def delete_threads(conn: AsyncConnection, thread_ids: list[str]) -> None:
    """Checkpoints, writes and the API's thread rows (runs cascade)."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    saver = AsyncPostgresSaver(conn)
    for thread_id in thread_ids:
        await saver.adelete_thread(thread_id)
    await conn.execute("DELETE FROM agent_threads WHERE thread_id = ANY(%s)", (thread_ids,))


async def keep_latest_checkpoints(conn: AsyncConnection, thread_ids: list[str]) -> None:
    """Of each thread, keep only its latest checkpoint (per namespace) and what that checkpoint
    reads (its writes and channel values)."""
    await conn.execute(
        "DELETE FROM checkpoints c WHERE c.thread_id = ANY(%(ids)s) AND c.checkpoint_id <> "
        "(SELECT max(l.checkpoint_id) FROM checkpoints l WHERE l.thread_id = c.thread_id "
        "AND l.checkpoint_ns = c.checkpoint_ns)", {"ids": thread_ids})
    await conn.execute(
        "DELETE FROM checkpoint_writes w WHERE w.thread_id = ANY(%(ids)s) AND NOT EXISTS "
        "(SELECT 1 FROM checkpoints c WHERE c.thread_id = w.thread_id AND "
        "c.checkpoint_ns = w.checkpoint_ns AND c.checkpoint_id = w.checkpoint_id)",
        {"ids": thread_ids})
    await conn.execute(
        "DELETE FROM checkpoint_blobs b WHERE b.thread_id = ANY(%(ids)s) AND NOT EXISTS "
        "(SELECT 1 FROM checkpoints c WHERE c.thread_id = b.thread_id AND "
        "c.checkpoint_ns = b.checkpoint_ns AND "
        "c.checkpoint -> 'channel_versions' ->> b.channel = b.version)", {"ids": thread_ids})


# Threads whose own TTL (threads.create/update `ttl`) has passed and that run nothing now.
_EXPIRED_THREADS = """
    SELECT t.thread_id, coalesce(t.ttl ->> 'strategy', 'delete') AS strategy FROM agent_threads t
    WHERE t.expires_at < now() AND NOT EXISTS (SELECT 1 FROM agent_runs r
        WHERE r.thread_id = t.thread_id AND r.status IN ('pending', 'running'))
    ORDER BY t.expires_at LIMIT 1000 FOR UPDATE OF t SKIP LOCKED
"""


async def sweep_expired_threads(pool: AsyncConnectionPool) -> tuple[int, int]:
    """Apply each expired thread's TTL strategy: `delete` it (runs, checkpoints), or
    `keep_latest` (its latest state only; it no longer expires). Any process may sweep: rows
    are locked, others skip them. Returns (deleted, pruned)."""
    async with pool.connection() as conn, conn.transaction():
        rows = await (await conn.execute(_EXPIRED_THREADS)).fetchall()
        deleted = [r["thread_id"] for r in rows if r["strategy"] != "keep_latest"]
        pruned = [r["thread_id"] for r in rows if r["strategy"] == "keep_latest"]
        if deleted:
            await delete_threads(conn, deleted)
        if pruned:
            await keep_latest_checkpoints(conn, pruned)
            await conn.execute("UPDATE agent_threads SET expires_at = NULL WHERE thread_id = ANY(%s)",
                               (pruned,))
    return len(deleted), len(pruned)


async def sweep_checkpoints(pool: AsyncConnectionPool, minutes: float) -> int:
    """Delete threads idle for `minutes`; one process at a time across replicas (the others skip)."""
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT pg_try_advisory_lock(%s) AS got",
                                        (SWEEP_LOCK_KEY,))).fetchone()
        if not row["got"]:
            return 0
        try:
            threads = await idle_threads(conn, minutes)
            await delete_threads(conn, threads)
            return len(threads)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (SWEEP_LOCK_KEY,))


async def _on_the_loop(func: Any, /, *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


def serialize_on_the_loop(module: Any) -> None:
    """Make `module`'s `asyncio.to_thread` calls run their function where they are awaited.

    AsyncPostgresSaver hands every checkpoint's and pending write's serialization (and the
    deserialization of pending writes) to a thread. That work holds the GIL from end to end
    (msgpack of Python objects), so the thread runs it no faster and no more in parallel than the
    event loop would, and each hop costs a thread pool submission, a GIL hand-off and a loop
    wake-up: measured with benchmarks/service.py's load (16 clients of `runs/wait`), serializing in
    place served 12% more runs per second (114 -> 128 req/s, three runs each, alternated). The
    results are the same; the loop is not yielded during the serialization, as it was not in
    practice with the GIL held."""
    module.asyncio = types.SimpleNamespace(**{**vars(asyncio), "to_thread": _on_the_loop})


SAVE_RETRY_SECONDS = 60.0  # how long a run's save is retried through a database outage
SAVE_RETRY_FIRST, SAVE_RETRY_MAX = 0.2, 2.0  # the back-off between tries


def retried(method: Any) -> Any:
    """A run's checkpoint write retried through a database outage (a restart, a failover) for up
    to SAVE_RETRY_SECONDS. Under the `async` durability LangGraph chains each save on the previous
    one and keeps executing nodes while they are made: one failed save skips every later one and
    the attempt ends in an error after running steps it could not save, then is run again from its
    input, every side effect twice. Retried, the step is saved once the database is back and a
    takeover (the lease lapsed meanwhile: the retry is then fenced off) resumes from it. The writes
    are idempotent (upserts). A write outside a run (an API state update) is not retried: its
    client gets its 503."""
    import asyncio
    import logging

    from psycopg_pool import PoolTimeout

    from .engine.fencing import is_fenced

    log = logging.getLogger("agentgen_runtime.checkpoints")

    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if FENCE.get() is None:
            return await method(self, *args, **kwargs)
        deadline = time.monotonic() + SAVE_RETRY_SECONDS
        delay = SAVE_RETRY_FIRST
        while True:
            try:
                return await method(self, *args, **kwargs)
            except (OperationalError, PoolTimeout) as exc:
                if is_fenced(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning("run %s: a checkpoint save failed (%s): retried", FENCE.get()[0],
                            type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, SAVE_RETRY_MAX)

    return wrapper


def measured_saver(pool: AsyncConnectionPool):
    """An AsyncPostgresSaver whose reads and writes are counted and timed (Prometheus), and whose
    checkpoint and pending-write statements are fenced by the lease of the run making them (see
    engine/fencing.py); its (de)serialization runs in place (`serialize_on_the_loop`). Raises RuntimeError
    when the installed checkpointer's SQL cannot be fenced."""
    import langgraph.checkpoint.postgres.aio as upstream
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    serialize_on_the_loop(upstream)

    from .observability import CHECKPOINTER_LATENCY, CHECKPOINTER_OPS

    statements = {query: fenced_statement(query) for query in (
        AsyncPostgresSaver.UPSERT_CHECKPOINTS_SQL, AsyncPostgresSaver.UPSERT_CHECKPOINT_WRITES_SQL,
        AsyncPostgresSaver.INSERT_CHECKPOINT_WRITES_SQL)}

    def measured(operation: str, method):
        async def wrapper(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return await method(self, *args, **kwargs)
            finally:
                CHECKPOINTER_OPS.labels(operation).inc()
                CHECKPOINTER_LATENCY.labels(operation).observe(time.perf_counter() - start)

        return wrapper

    class MeasuredSaver(AsyncPostgresSaver):
        aget_tuple = measured("read", AsyncPostgresSaver.aget_tuple)
        aput = retried(measured("write", AsyncPostgresSaver.aput))
        aput_writes = retried(measured("write_pending", AsyncPostgresSaver.aput_writes))

        @asynccontextmanager
        async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[Any]:
            # AsyncPostgresSaver serializes every operation of the process through one asyncio
            # lock, which a single shared connection needs. With a pool each operation has a
            # connection of its own: without the lock, runs do not queue behind each other (nor,
            # during an outage, behind each other's connection timeouts).
            fence = FENCE.get()
            if self.pipe is not None or not isinstance(self.conn, AsyncConnectionPool):
                async with super()._cursor(pipeline=pipeline) as cur:
                    yield cur if fence is None else FencingCursor(cur, fence, statements)
                return
            async with self.conn.connection() as conn:
                if pipeline:
                    # (older checkpointers have no supports_pipeline: they always pipeline)
                    batch = (conn.pipeline() if getattr(self, "supports_pipeline", True)
                             else conn.transaction())
                    async with batch, conn.cursor(binary=True, row_factory=dict_row) as cur:
                        yield cur if fence is None else FencingCursor(cur, fence, statements)
                else:
                    async with conn.cursor(binary=True, row_factory=dict_row) as cur:
                        yield cur if fence is None else FencingCursor(cur, fence, statements)

    return MeasuredSaver(pool)


def fenced_store(pool: AsyncConnectionPool, **options: Any):
    """An AsyncPostgresStore whose writes made inside a run are fenced by the run's lease: the
    fence is checked first in the same pipeline (one implicit transaction, no extra round trip),
    so a refused check aborts the batch's writes."""
    from langgraph.store.base import BaseStore
    from langgraph.store.postgres.aio import AsyncPostgresStore

    class FencedStore(AsyncPostgresStore):
        # The batched store queues puts to a background task that does not run in the run's
        # context (it would not see its fence): inside a run, writes go straight to abatch.
        async def aput(self, *args: Any, **kwargs: Any) -> None:
            if FENCE.get() is None:
                return await super().aput(*args, **kwargs)
            return await BaseStore.aput(self, *args, **kwargs)

        async def adelete(self, *args: Any, **kwargs: Any) -> None:
            if FENCE.get() is None:
                return await super().adelete(*args, **kwargs)
            return await BaseStore.adelete(self, *args, **kwargs)

        async def _batch_put_ops(self, put_ops: Any, cur: Any) -> None:
            fence = FENCE.get()
            if fence is not None:
                await cur.execute("SELECT agent_fence(%s, %s::integer, '')", fence)
            await super()._batch_put_ops(put_ops, cur)

    return FencedStore(pool, **options)
