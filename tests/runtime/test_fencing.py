"""Lease fencing: an attempt that lost its run writes nothing, and a blocked event loop is not a dead
worker.

- Directly on the library: each kind of write a run makes (checkpoint, pending writes, store item,
  run events) is refused for an attempt that no longer holds the run, and accepted for the one
  that does.
- Two runtime processes on one PostgreSQL, the real langgraph-sdk: a process frozen (SIGSTOP) in
  the middle of a node past its lease, its run taken over and finished by the other, a second run
  acknowledged on the thread, then the frozen process woken (SIGCONT): the thread keeps both runs
  exactly once, its history linear, and the woken attempt is recorded as fenced.
- An async node that calls time.sleep for 3 leases: executed once, the next run kept, a warning
  names the node. A write of the run held open for 3 leases (what a checkpoint in flight does
  under such a node): the renewal waits for it and the run is not handed over. A write left open
  by a stalled process is ended by the server, which frees the run for a takeover."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import pytest
from langgraph_sdk import get_client

from ..servers import output, wait_until
from .helpers import runtime_server

pytestmark = [pytest.mark.slow, pytest.mark.serial]
LEASE = 2
ENGINE = {"RUN_LEASE_SECONDS": str(LEASE), "RATE_LIMIT_PER_MINUTE": "1000000", "LOG_LEVEL": "INFO"}


def _settings(database: str):
    from agentgen_runtime.settings import Settings

    return Settings(database_url=database, api_keys="k", run_lease_seconds=LEASE)


async def _pool(settings):
    """The runtime's pool on the test database, its schema set up."""
    from agentgen_runtime.db import create_pool
    from agentgen_runtime.schema import setup_schema

    pool = create_pool(settings)
    await pool.open(wait=True)
    await setup_schema(pool)
    return pool


async def _running_run(pool, attempt: int) -> tuple[str, str]:
    """A thread of identity `k` and a run on it, running at `attempt`: (thread id, run id)."""
    thread, run = str(uuid.uuid4()), str(uuid.uuid4())
    async with pool.connection() as conn:
        await conn.execute("INSERT INTO agent_threads (thread_id, owner) VALUES (%s, 'k')",
                           (thread,))
        await conn.execute(
            "INSERT INTO agent_runs (run_id, thread_id, assistant_id, status, attempt, worker) "
            "VALUES (%s, %s, 'slow', 'running', %s, 'w')", (run, thread, attempt))
    return thread, run


def test_every_write_of_an_attempt_that_lost_its_run_is_refused(database):
    from agentgen_runtime.db import fenced_store, measured_saver
    from agentgen_runtime.engine.fencing import FENCE, is_fenced
    from agentgen_runtime.engine.runs import Engine, LocalRun
    from langgraph.checkpoint.base import empty_checkpoint

    async def scenario() -> None:
        settings = _settings(database)
        pool = await _pool(settings)
        try:
            # attempt 2 holds the run: attempt 1 is a zombie
            thread, run = await _running_run(pool, attempt=2)
            saver, store = measured_saver(pool), fenced_store(pool)
            config = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}

            def checkpoint():
                c = empty_checkpoint()
                c["channel_values"] = {"log": ["x"]}
                c["channel_versions"] = {"log": 1}
                return c

            async def writes(attempt: int) -> dict[str, bool]:
                """Which of the four writes attempt `attempt` got through."""
                token = FENCE.set((run, attempt))
                refused: dict[str, bool] = {}
                try:
                    for name, write in (
                        ("checkpoint", lambda: saver.aput(config, checkpoint(), {"run_id": run},
                                                          {"log": 1})),
                        ("pending writes", lambda: saver.aput_writes(
                            {"configurable": {**config["configurable"], "checkpoint_id": "c1"}},
                            [("log", ["w"])], "task-1")),
                        ("store item", lambda: store.aput(("memories", thread), f"a{attempt}",
                                                          {"v": attempt})),
                    ):
                        try:
                            await write()
                            refused[name] = False
                        except Exception as exc:  # noqa: BLE001
                            assert is_fenced(exc), (name, exc)
                            refused[name] = True
                    engine = Engine(settings, pool, None, None)  # type: ignore[arg-type]
                    local = LocalRun(run, attempt)
                    engine._emit(local, "values", {"attempt": attempt})
                    try:
                        await engine._flush(local)
                        refused["events"] = False
                    except Exception as exc:  # noqa: BLE001
                        assert is_fenced(exc), exc
                        refused["events"] = True
                finally:
                    FENCE.reset(token)
                return refused

            assert await writes(1) == dict.fromkeys(
                ("checkpoint", "pending writes", "store item", "events"), True)
            async with pool.connection() as conn:
                for table in ("checkpoints", "checkpoint_writes"):
                    count = await (await conn.execute(
                        f"SELECT count(*) AS n FROM {table} WHERE thread_id = %s",  # noqa: S608
                        (thread,))).fetchone()
                    assert count["n"] == 0, table
                events = await (await conn.execute(
                    "SELECT count(*) AS n FROM agent_run_events WHERE run_id = %s", (run,))).fetchone()
                assert events["n"] == 0
            assert await store.aget(("memories", thread), "a1") is None

            assert await writes(2) == dict.fromkeys(
                ("checkpoint", "pending writes", "store item", "events"), False)
            assert (await saver.aget_tuple(config)).checkpoint["channel_values"]["log"] == ["x"]
            assert (await store.aget(("memories", thread), "a2")).value == {"v": 2}

            # once the run ended, even the attempt that held it writes nothing more
            async with pool.connection() as conn:
                await conn.execute("UPDATE agent_runs SET status = 'success' WHERE run_id = %s",
                                   (run,))
            assert await writes(2) == dict.fromkeys(
                ("checkpoint", "pending writes", "store item", "events"), True)
            # outside runs (an API state update) nothing is fenced
            await saver.aput(config, checkpoint(), {}, {"log": 1})
        finally:
            await pool.close()

    asyncio.run(scenario())


def test_a_write_left_open_by_a_stalled_process_is_ended_by_the_server(database):
    """A process that stops turning in the middle of a run's write (SIGSTOP, a paused VM) holds the
    run row (the fence's share lock) and so keeps every takeover off; the server ends its
    transaction once it has been idle for longer than run_timeout_seconds and two leases, which
    frees the row, and the stalled write fails when the process wakes."""
    import psycopg
    from agentgen_runtime.settings import Settings

    async def scenario() -> None:
        pool = await _pool(Settings(database_url=database, api_keys="k", run_lease_seconds=1,
                                    run_timeout_seconds=1))
        try:
            _, run = await _running_run(pool, attempt=1)
            lock_free = ("SELECT 1 FROM agent_runs WHERE run_id = %s "
                         "FOR NO KEY UPDATE SKIP LOCKED")
            with pytest.raises((psycopg.errors.IdleInTransactionSessionTimeout,
                                psycopg.OperationalError)):
                async with pool.connection() as conn, conn.transaction():
                    await conn.execute("SELECT agent_fence(%s, 1, 'write under way')", (run,))
                    async with await psycopg.AsyncConnection.connect(database) as other:
                        assert await (await other.execute(lock_free, (run,))).fetchone() is None
                        await asyncio.sleep(4)  # stalled: idle in its transaction past 3 s
                        assert await (await other.execute(lock_free, (run,))).fetchone() == (1,)
                    await conn.execute("SELECT 1")  # the stalled process wakes
        finally:
            await pool.close()

    asyncio.run(scenario())


def _history_is_linear(history: list[dict]) -> bool:
    return all(newer["parent_checkpoint"] and
               newer["parent_checkpoint"]["checkpoint_id"] == older["checkpoint"]["checkpoint_id"]
               for newer, older in zip(history, history[1:], strict=False))


def _metric(server, name: str) -> float:
    text = server.metrics()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


@pytest.mark.parametrize("durability", ["async", "exit"])
def test_a_frozen_worker_woken_after_a_takeover_writes_nothing(database, durability):
    with runtime_server(database, **ENGINE) as a, runtime_server(database, **ENGINE) as b:
        ca, cb = (get_client(url=s.base, api_key="key-one", timeout=60) for s in (a, b))

        async def scenario() -> None:
            tid = (await ca.threads.create())["thread_id"]
            first = await ca.runs.create(tid, "slow", input={"text": "r1", "seconds": 3, "block": False},
                                         durability=durability)
            await asyncio.sleep(1)  # in the middle of `reply`, on a
            assert (await ca.runs.get(tid, first["run_id"]))["status"] == "running"
            a.proc.send_signal(signal.SIGSTOP)
            try:
                joined = await cb.runs.join(tid, first["run_id"])  # taken over and finished by b
                assert joined["log"] == ["in:r1", "out:r1"], joined
                second = await cb.runs.wait(tid, "slow", input={"text": "r2", "seconds": 0},
                                            durability=durability)
                assert second["log"] == ["in:r1", "out:r1", "in:r2", "out:r2"], second
            finally:
                a.proc.send_signal(signal.SIGCONT)
            # a wakes up in the middle of r1's `reply`, whose lease b has taken and released, and
            # finishes the node (its sleep is over)
            wait_until(lambda: a.call("GET", "/health")[0] == 200, 20, "a to answer again")
            await asyncio.sleep(2)
            state = await cb.threads.get_state(tid)
            assert state["values"]["log"] == ["in:r1", "out:r1", "in:r2", "out:r2"], state
            history = await cb.threads.get_history(tid, limit=100)
            assert _history_is_linear(history), [(h["checkpoint"]["checkpoint_id"],
                                                  (h["parent_checkpoint"] or {}).get("checkpoint_id"))
                                                 for h in history]
            runs = await cb.runs.list(tid)
            assert sorted(r["status"] for r in runs) == ["success", "success"], runs

        asyncio.run(scenario())
        wait_until(lambda: "fenced off" in output(a.proc), 20, "the woken attempt to be fenced")
        assert _metric(a, "agent_runs_fenced_total") >= 1
        assert _metric(b, "agent_runs_fenced_total") == 0


def test_a_node_blocking_the_loop_for_three_leases_runs_once(database):
    with runtime_server(database, **ENGINE) as a, runtime_server(database, **ENGINE) as b:
        ca = get_client(url=a.base, api_key="key-one", timeout=60)

        async def scenario() -> None:
            tid = (await ca.threads.create())["thread_id"]
            started = time.monotonic()
            answer = await ca.runs.wait(tid, "slow", input={"text": "r1", "seconds": 3 * LEASE,
                                                            "block": True})
            assert time.monotonic() - started >= 3 * LEASE
            assert answer["log"] == ["in:r1", "out:r1"], answer
            second = await ca.runs.wait(tid, "slow", input={"text": "r2", "seconds": 0,
                                                            "block": False})
            assert second["log"] == ["in:r1", "out:r1", "in:r2", "out:r2"], second
            runs = await ca.runs.list(tid)
            assert sorted(r["status"] for r in runs) == ["success", "success"], runs

        asyncio.run(scenario())
        logged = output(a.proc)
        assert "event loop blocked" in logged and "node reply" in logged and "graph slow" in logged, \
            logged[-3000:]
        # executed once: nobody took the run over, nothing was fenced
        assert _metric(a, "agent_runs_fenced_total") == 0
        assert _metric(b, "agent_runs_fenced_total") == 0
        assert _metric(a, "agent_event_loop_stalls_total") >= 1
        assert "lease lapsed" not in output(a.proc) + output(b.proc)


def test_a_write_held_open_past_three_leases_does_not_hand_the_run_over(database):
    """A run's write still open (its transaction holds the share lock of the fence on the run row:
    what a checkpoint write in flight does while a blocking node holds the loop before its commit)
    makes its lease renewal wait; the renewal counts its lease from when it lands, and the reaper
    skips the row meanwhile: the run is executed once, by the process that holds it. Another run of
    the same process, whose row is free, is renewed all along (not held behind the first)."""
    import psycopg

    with runtime_server(database, **ENGINE) as a, runtime_server(database, **ENGINE) as b:
        ca = get_client(url=a.base, api_key="key-one", timeout=60)

        async def scenario() -> None:
            runs = []
            for text in ("r1", "other"):
                tid = (await ca.threads.create())["thread_id"]
                runs.append((tid, (await ca.runs.create(
                    tid, "slow", input={"text": text, "seconds": 4 * LEASE}))["run_id"]))
            for tid, run_id in runs:
                wait_until(lambda tid=tid, run_id=run_id: a.call(
                    "GET", f"/threads/{tid}/runs/{run_id}")[1]["status"] == "running",
                    20, "the runs to start")
            held = runs[0][1]
            async with await psycopg.AsyncConnection.connect(database) as conn, conn.transaction():
                attempt = (await (await conn.execute(
                    "SELECT attempt FROM agent_runs WHERE run_id = %s", (held,))).fetchone())[0]
                await conn.execute("SELECT agent_fence(%s, %s, 'write under way')",
                                   (held, attempt))
                await asyncio.sleep(3 * LEASE)
            for (tid, run_id), text in zip(runs, ("r1", "other"), strict=True):
                joined = await ca.runs.join(tid, run_id)
                assert joined["log"] == [f"in:{text}", f"out:{text}"], joined
                assert (await ca.runs.get(tid, run_id))["status"] == "success"

        asyncio.run(scenario())
        logged = output(a.proc) + output(b.proc)
        assert "lease lapsed" not in logged and "fenced off" not in logged, logged[-3000:]
        assert _metric(a, "agent_runs_fenced_total") == 0
        assert _metric(b, "agent_runs_fenced_total") == 0
