"""Cancellation that asyncio swallows: the run engine as a library, on a real PostgreSQL.

On Python 3.11 a cancellation that arrives while a task is being handed what it waited for
(`asyncio.wait_for`, `Condition.wait`: psycopg_pool's getconn when the pool is busy) can be
swallowed. Under load that left a run `running` forever (its event flusher, stopped by
cancellation, swallowed it and flushed on; the run waited for it), with another run queued behind
it on its thread. These tests make the swallow happen on purpose, every time."""

from __future__ import annotations

import asyncio
import uuid

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.serial]


def _swallowing_once(coro_fn):
    """`coro_fn` wrapped so that the first cancellation it receives is swallowed (as 3.11 does)."""
    swallowed = []

    async def wrapper(*args, **kwargs):
        try:
            return await coro_fn(*args, **kwargs)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed.append(True)
            return None

    return wrapper, swallowed


async def _engine(database: str, executor):
    from agentgen_runtime.db import create_pool
    from agentgen_runtime.engine.runs import Engine
    from agentgen_runtime.schema import setup_schema
    from agentgen_runtime.settings import Settings

    settings = Settings(database_url=database, api_keys="k", run_lease_seconds=3)
    pool = create_pool(settings)
    await pool.open(wait=True)
    await setup_schema(pool)
    engine = Engine(settings, pool, executor, None)  # type: ignore[arg-type]
    engine.start()
    return engine, pool


async def _create(engine, *, record_events: bool) -> str:
    run_id = str(uuid.uuid4())
    row = await engine.create(run_id=run_id, thread_id=None, assistant_id="a", graph_id="g",
                              kwargs={}, metadata={}, strategy="enqueue",
                              record_events=record_events)
    assert row["status"] == "running"  # claimed by this process at once
    return run_id


def test_a_run_ends_when_its_event_flusher_swallows_a_cancellation(database):
    async def executor(row, emit):
        for i in range(20):
            emit("values", {"i": i})
            await asyncio.sleep(0.01)
        return "success", {"i": 19}, None

    async def scenario():
        engine, pool = await _engine(database, executor)
        try:
            store = engine._flush

            async def slow_flush(run):  # a busy pool: most of the flusher's time is a flush
                await asyncio.sleep(0.3)
                await store(run)

            engine._flush, swallowed = _swallowing_once(slow_flush)
            run_id = await _create(engine, record_events=True)
            final = await asyncio.wait_for(engine.wait(run_id), 10)  # was: forever
            assert final is not None and final["status"] == "success", final
            events = [seq for seq, _, _ in await engine._stored_events(run_id)]
            assert events == list(range(1, 21))  # every event, in order, once
        finally:
            await engine.stop(0)
            await pool.close()

    asyncio.run(scenario())


def test_a_cancellation_the_run_swallowed_is_delivered_again(database):
    received = []

    async def executor(row, emit):
        for _ in range(200):  # 20 s unless cancelled
            try:
                await asyncio.sleep(0.1)
            except asyncio.CancelledError:
                received.append(True)
                if len(received) == 1:
                    continue  # swallowed, as asyncio may
                raise
        return "success", None, None

    async def scenario():
        engine, pool = await _engine(database, executor)
        try:
            run_id = await _create(engine, record_events=False)
            await asyncio.sleep(0.3)
            assert await engine.cancel([run_id], "interrupt") == [run_id]
            final = await asyncio.wait_for(engine.wait(run_id), 5)  # was: success after 20 s
            assert final is not None and final["status"] == "interrupted", final
            assert len(received) == 2
        finally:
            await engine.stop(0)
            await pool.close()

    asyncio.run(scenario())
