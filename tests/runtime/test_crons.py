"""Crons through the real langgraph-sdk: the API (create, get, update, delete, search, count; bad
input refused), and the ticks: exactly once per tick across three processes (one of them killed
mid-schedule), missed ticks run once (not as a burst), runs kept or not as `on_run_completed`
says, failed ticks recorded and counted."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from langgraph_sdk import get_client

from ..servers import stop_process, wait_until
from .helpers import runtime_server

pytestmark = pytest.mark.slow
ENGINE = {"RUN_LEASE_SECONDS": "3", "RATE_LIMIT_PER_MINUTE": "1000000", "CRON_ALLOW_SECONDS": "true"}
QUESTION = {"question": "rain?"}
PARIS = ZoneInfo("Europe/Paris")


def client(server, key: str = "key-one"):
    return get_client(url=server.base, api_key=key, timeout=30)


def cron_runs(database: str, cron_id: str) -> list[dict]:
    """The runs a cron's ticks created (its id is in their configurable, as on the Platform)."""
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT run_id, thread_id, status, created_at FROM agent_runs "
            "WHERE kwargs -> 'config' -> 'configurable' ->> 'cron_id' = %s ORDER BY created_at",
            (cron_id,)).fetchall()
    return [{"run_id": r[0], "thread_id": r[1], "status": r[2], "created_at": r[3]} for r in rows]


@pytest.fixture(scope="module")
def server(database):
    with runtime_server(database, **ENGINE) as one:
        yield one


def test_the_cron_api_answers_as_the_platform_and_refuses_bad_input(server):
    async def scenario():
        c = client(server)
        tid = (await c.threads.create())["thread_id"]
        seen = {}
        stateless = await c.crons.create("weather", schedule="0 9 * * 1-5", input=QUESTION,
                                          metadata={"team": "a"}, timezone="Europe/Paris")
        on_thread = await c.crons.create_for_thread(tid, "weather", schedule="0 0 1 1 *",
                                                    input=QUESTION, enabled=False)
        seen["stateless"], seen["on_thread"] = stateless, on_thread
        seen["search"] = await c.crons.search()
        seen["by thread"] = await c.crons.search(thread_id=tid)
        seen["by assistant"] = await c.crons.count(assistant_id="weather")
        seen["by metadata"] = await c.crons.search(metadata={"team": "a"}, select=["cron_id"])
        seen["enabled only"] = await c.crons.search(enabled=True)
        seen["updated"] = await c.crons.update(stateless["cron_id"], schedule="30 8 * * *",
                                               metadata={"owner": "ops"}, input={"question": "sun?"},
                                               end_time=datetime(2100, 1, 1, tzinfo=UTC))
        seen["end cleared"] = await c.crons.update(stateless["cron_id"], end_time=None)
        await c.crons.delete(on_thread["cron_id"])
        seen["after delete"] = await c.crons.count()
        return seen

    seen = asyncio.run(scenario())
    stateless, on_thread = seen["stateless"], seen["on_thread"]
    assert set(stateless) == {"cron_id", "assistant_id", "thread_id", "user_id", "end_time", "schedule",
                              "timezone", "payload", "next_run_date", "metadata", "on_run_completed",
                              "enabled", "created_at", "updated_at"}
    assert stateless["thread_id"] is None and stateless["on_run_completed"] == "delete"
    assert on_thread["on_run_completed"] is None and on_thread["enabled"] is False
    # the graph's name resolved to its system assistant; the payload carries the run and the cron id
    assert stateless["assistant_id"] == on_thread["assistant_id"] != "weather"
    assert stateless["payload"]["input"] == QUESTION
    assert stateless["payload"]["config"]["configurable"]["cron_id"] == stateless["cron_id"]
    # 09:00 on a weekday in Paris is 07:00 or 08:00 UTC
    first = datetime.fromisoformat(stateless["next_run_date"])
    assert first > datetime.now(UTC) and first.hour in (7, 8) and first.weekday() < 5, first
    assert [c["cron_id"] for c in seen["search"]] == [on_thread["cron_id"], stateless["cron_id"]]
    assert [c["cron_id"] for c in seen["by thread"]] == [on_thread["cron_id"]]
    assert seen["by assistant"] == 2
    assert seen["by metadata"] == [{"cron_id": stateless["cron_id"]}]
    assert [c["cron_id"] for c in seen["enabled only"]] == [stateless["cron_id"]]
    updated = seen["updated"]
    assert updated["schedule"] == "30 8 * * *" and updated["metadata"] == {"team": "a", "owner": "ops"}
    assert updated["payload"]["input"] == {"question": "sun?"}
    assert updated["payload"]["config"]["configurable"]["cron_id"] == stateless["cron_id"]
    assert updated["end_time"].startswith("2100-01-01")
    moved = datetime.fromisoformat(updated["next_run_date"]).astimezone(PARIS)
    assert (moved.hour, moved.minute) == (8, 30), moved
    assert seen["end cleared"]["end_time"] is None
    assert seen["after delete"] == 1

    cid = stateless["cron_id"]
    refused = {
        "schedule": ("POST", "/runs/crons", {"assistant_id": "weather", "schedule": "every day"}),
        "never": ("POST", "/runs/crons", {"assistant_id": "weather", "schedule": "0 0 30 2 *"}),
        "timezone": ("POST", "/runs/crons", {"assistant_id": "weather", "schedule": "0 0 * * *",
                                             "timezone": "Mars/Olympus"}),
        "webhook": ("POST", "/runs/crons", {"assistant_id": "weather", "schedule": "0 0 * * *",
                                            "webhook": "https://example.com/hook"}),
        "on_run_completed": ("POST", "/threads/x/runs/crons", {
            "assistant_id": "weather", "schedule": "0 0 * * *", "on_run_completed": "keep"}),
        "strategy": ("PATCH", f"/runs/crons/{cid}", {"multitask_strategy": "sometimes"}),
    }
    for field, (method, path, body) in refused.items():
        status, answer, _ = server.call(method, path, body)
        assert status == 422, (field, status, answer)
        assert (field if field != "never" else "schedule") in str(answer), (field, answer)
    assert server.call("PATCH", f"/runs/crons/{cid}", {})[0] == 400
    assert server.call("POST", "/runs/crons", {"assistant_id": "nope", "schedule": "0 0 * * *"})[0] == 404
    assert server.call("POST", "/threads/missing/runs/crons",
                       {"assistant_id": "weather", "schedule": "0 0 * * *"})[0] == 404
    assert server.call("GET", "/runs/crons/missing")[0] == 404
    assert server.call("DELETE", f"/runs/crons/{cid}")[0] == 204
    assert server.call("DELETE", f"/runs/crons/{cid}")[0] == 404


def test_a_cron_goes_with_its_thread_and_its_assistant(server):
    async def scenario():
        c = client(server)
        tid = (await c.threads.create())["thread_id"]
        assistant = await c.assistants.create("weather", name="nightly")
        await c.crons.create_for_thread(tid, "weather", schedule="0 0 1 1 *")
        await c.crons.create(assistant["assistant_id"], schedule="0 0 1 1 *")
        before = (await c.crons.count(thread_id=tid),
                  await c.crons.count(assistant_id=assistant["assistant_id"]))
        await c.threads.delete(tid)
        await c.assistants.delete(assistant["assistant_id"])
        after = (await c.crons.count(thread_id=tid),
                 await c.crons.count(assistant_id=assistant["assistant_id"]))
        return before, after

    assert asyncio.run(scenario()) == ((1, 1), (0, 0))


def test_every_two_seconds_on_three_processes_each_tick_runs_once(database):
    """A 2-second schedule (croniter's sixth field: seconds) over 20 s with three processes, one of
    them killed with SIGKILL halfway: 10 ± 1 runs, never two for one tick (ticks are 2 s apart,
    so two runs less than a second apart would be one tick taken twice), each run finished."""
    with runtime_server(database, **ENGINE) as a, runtime_server(database, **ENGINE) as b, \
            runtime_server(database, **ENGINE) as c:
        async def create():
            sdk = client(a)
            tid = (await sdk.threads.create())["thread_id"]
            cron = await sdk.crons.create_for_thread(tid, "weather", schedule="* * * * * */2",
                                                     input=QUESTION)
            return tid, cron

        tid, cron = asyncio.run(create())
        started = time.monotonic()
        time.sleep(10)
        stop_process(b.proc, signal.SIGKILL)
        time.sleep(20 - (time.monotonic() - started))
        assert a.call("PATCH", f"/runs/crons/{cron['cron_id']}", {"enabled": False})[0] == 200
        runs = cron_runs(database, cron["cron_id"])
        assert 9 <= len(runs) <= 11, [r["created_at"] for r in runs]
        gaps = [(y["created_at"] - x["created_at"]).total_seconds() for x, y in pairwise(runs)]
        assert min(gaps) > 1.0, gaps
        assert {r["thread_id"] for r in runs} == {tid}
        wait_until(lambda: all(r["status"] == "success" for r in cron_runs(database, cron["cron_id"])),
                   timeout=30, what="every cron run finished")
        # they are the thread's runs, as runs.list answers them
        status, listed, _ = c.call("GET", f"/threads/{tid}/runs?limit=100")
        assert status == 200 and {r["run_id"] for r in listed} == {r["run_id"] for r in runs}
        assert 'agent_cron_runs_total{outcome="created"}' in a.metrics() + c.metrics()


def test_missed_ticks_run_once_and_runs_are_kept_as_on_run_completed_says(server, database):
    """A cron every minute whose process was down for 30 minutes (its next run date 30 minutes
    ago) runs once, not 30 times, and its next run is in the future. Without a thread, `delete`
    runs statelessly (no thread) and `keep` runs on a new thread that is kept."""
    async def create(**options):
        return await client(server).crons.create("weather", schedule="* * * * *", input=QUESTION,
                                                  **options)

    dropped, kept = asyncio.run(create()), asyncio.run(create(on_run_completed="keep"))
    with psycopg.connect(database) as conn:
        conn.execute("UPDATE agent_crons SET next_run_date = now() - interval '30 minutes' "
                     "WHERE cron_id = ANY(%s)", ([dropped["cron_id"], kept["cron_id"]],))
    wait_until(lambda: cron_runs(database, dropped["cron_id"]) and cron_runs(database, kept["cron_id"]),
               timeout=10, what="the overdue ticks")
    time.sleep(2)  # a burst would come now
    for cron in (dropped, kept):
        assert len(cron_runs(database, cron["cron_id"])) == 1
        status, now, _ = server.call("GET", f"/runs/crons/{cron['cron_id']}")
        assert datetime.fromisoformat(now["next_run_date"]) > datetime.now(UTC) - timedelta(seconds=1)
    assert cron_runs(database, dropped["cron_id"])[0]["thread_id"] is None
    thread = cron_runs(database, kept["cron_id"])[0]["thread_id"]
    wait_until(lambda: cron_runs(database, kept["cron_id"])[0]["status"] == "success", timeout=30,
               what="the kept run")
    status, state, _ = server.call("GET", f"/threads/{thread}/state")
    assert status == 200 and state["values"]["question"] == "rain?", state
    for cron in (dropped, kept):
        server.call("DELETE", f"/runs/crons/{cron['cron_id']}")


def test_a_tick_that_cannot_run_is_recorded_counted_and_the_schedule_goes_on(server, database):
    """A cron on a thread with multitask_strategy=reject while a slow run holds the thread: the
    tick is refused, recorded on the cron (last_error) and counted as failed; the next tick after
    the thread is free runs."""
    async def scenario():
        c = client(server)
        tid = (await c.threads.create())["thread_id"]
        await c.runs.create(tid, "slow", input={"text": "busy", "seconds": 3})
        cron = await c.crons.create_for_thread(tid, "slow", schedule="* * * * * *",
                                               input={"text": "tick", "seconds": 0},
                                               multitask_strategy="reject")
        return tid, cron

    tid, cron = asyncio.run(scenario())

    def last_error():
        with psycopg.connect(database) as conn:
            return conn.execute("SELECT last_error FROM agent_crons WHERE cron_id = %s",
                                (cron["cron_id"],)).fetchone()[0]

    wait_until(lambda: last_error() is not None, timeout=10, what="a refused tick")
    assert "reject" in last_error()
    assert 'agent_cron_runs_total{outcome="failed"}' in server.metrics()
    wait_until(lambda: any(r["status"] == "success" for r in cron_runs(database, cron["cron_id"])),
               timeout=20, what="a tick after the thread is free")
    server.call("DELETE", f"/runs/crons/{cron['cron_id']}")
    with pytest.raises(httpx.HTTPStatusError):
        asyncio.run(client(server).crons.update(cron["cron_id"], enabled=True))
