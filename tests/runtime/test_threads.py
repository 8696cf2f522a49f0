"""Threads as the SDK manages them beyond create/get/delete: update (metadata merged), count,
copy (a thread of one's own with the same state and history, diverging afterwards), prune (delete,
or keep only the latest state), each side by side with what the thread held before; the thread
stream (every run's events and the state updates, across processes, after Last-Event-ID), strict
resumes, thread TTLs, creating a thread with supersteps, search/count by status and values."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable

import httpx
import pytest
from langgraph_sdk import get_client

from .helpers import runtime_server

pytestmark = pytest.mark.slow


async def scenario(base: str) -> None:
    client = get_client(url=base, api_key="key-one")
    thread = await client.threads.create(metadata={"team": "a", "tier": 1})
    tid = thread["thread_id"]
    for text in ("one", "two", "three"):
        await client.runs.wait(tid, "slow", input={"text": text})

    # search and count by status and by values (containment), with select and extract
    found = await client.threads.search(values={"log": ["out:three"]}, status="idle",
                                        select=["thread_id", "status"],
                                        extract={"last": "values.log[-1]", "team": "metadata.team"})
    assert found == [{"thread_id": tid, "status": "idle",
                      "extracted": {"last": "out:three", "team": "a"}}], found
    assert await client.threads.search(values={"log": ["out:four"]}) == []
    assert await client.threads.count(values={"log": ["in:one", "out:two"]}) == 1
    assert await client.threads.count(status="busy") == 0
    assert (await client.threads.search(sort_by="status", limit=1))[0]["values"]["log"][-1] == "out:three"

    # update: merged into the metadata; the graph the thread runs stays recorded
    updated = await client.threads.update(tid, metadata={"tier": 2, "owner": "ops"})
    assert {k: updated["metadata"][k] for k in ("team", "tier", "owner")} == {
        "team": "a", "tier": 2, "owner": "ops"}
    assert updated["metadata"]["graph_id"] == "slow" and updated["updated_at"] >= thread["updated_at"]
    assert updated["values"]["log"][-1] == "out:three"
    assert await client.threads.update(tid, metadata={"x": 1}, return_minimal=True) is None

    # count: the caller's threads, by metadata
    other = (await client.threads.create(metadata={"team": "b"}))["thread_id"]
    assert await client.threads.count(metadata={"team": "a"}) == 1
    assert await client.threads.count() == 2

    # copy: same state and history under a new id, then independent of the original
    history = await client.threads.get_history(tid, limit=100)
    copy = await client.threads.copy(tid)
    cid = copy["thread_id"]
    assert cid != tid and copy["metadata"]["team"] == "a"
    assert (await client.threads.get_state(cid))["values"] == (await client.threads.get_state(tid))["values"]
    copied = await client.threads.get_history(cid, limit=100)
    assert [h["checkpoint"]["checkpoint_id"] for h in copied] == [
        h["checkpoint"]["checkpoint_id"] for h in history]
    assert all(h["checkpoint"]["thread_id"] == cid for h in copied)
    await client.runs.wait(cid, "slow", input={"text": "four"})
    assert (await client.threads.get_state(cid))["values"]["log"][-1] == "out:four"
    assert (await client.threads.get_state(tid))["values"]["log"][-1] == "out:three"

    # prune keep_latest: the state stays, the older checkpoints go, the thread still runs
    before = (await client.threads.get_state(tid))["values"]
    assert len(history) > 1
    assert await client.threads.prune([tid], strategy="keep_latest") == {"pruned_count": 1}
    assert (await client.threads.get_state(tid))["values"] == before
    assert len(await client.threads.get_history(tid, limit=100)) == 1
    await client.runs.wait(tid, "slow", input={"text": "five"})
    assert (await client.threads.get_state(tid))["values"]["log"][-2:] == ["in:five", "out:five"]

    # prune delete: gone, with its checkpoints (the copy keeps its own)
    assert await client.threads.prune([tid, other, "no-such-thread"]) == {"pruned_count": 2}
    assert await client.threads.count() == 1
    assert (await client.threads.get_state(cid))["values"]["log"][-1] == "out:four"

    # created with supersteps (a thread's history brought from elsewhere), step by step
    steps = [{"updates": [{"values": {"text": "s", "log": ["in:s"]}, "as_node": "receive"}]},
             {"updates": [{"values": {"log": ["out:s"]}, "as_node": "reply"}]}]
    brought = (await client.threads.create(graph_id="slow", supersteps=steps))["thread_id"]
    assert (await client.threads.get_state(brought))["values"]["log"] == ["in:s", "out:s"]
    assert [h["metadata"]["step"] for h in await client.threads.get_history(brought)] == [1, 0]
    await client.runs.wait(brought, "slow", input={"text": "t"})
    assert (await client.threads.get_state(brought))["values"]["log"][-1] == "out:t"
    with pytest.raises(httpx.HTTPStatusError) as refused:  # which graph? refused, nothing kept
        await client.threads.create(thread_id=str(uuid.uuid4()), supersteps=steps)
    assert refused.value.response.status_code == 422
    with pytest.raises(httpx.HTTPStatusError) as refused:  # a node the graph has not: not kept
        await client.threads.create(thread_id=(lost := str(uuid.uuid4())), graph_id="slow",
                                    supersteps=[{"updates": [{"values": {}, "as_node": "nope"}]}])
    assert refused.value.response.status_code == 422
    assert await client.threads.search(ids=[lost]) == []


def test_update_count_copy_and_prune(database):
    with runtime_server(database) as server:
        asyncio.run(scenario(server.base))
        # options this runtime does not honour are refused, naming them (never dropped)
        status, body, _ = server.call("POST", "/threads/count", {"status": "sleeping"})
        assert status == 422 and "status" in body["message"], body
        status, body, _ = server.call("POST", "/threads/search", {"extract": {"x": "owner.id"}})
        assert status == 422 and "extract" in body["message"], body
        status, body, _ = server.call("POST", "/threads", {"supersteps": [{"updates": [
            {"as_node": "receive", "command": {"resume": 1}}]}], "metadata": {"graph_id": "slow"}})
        assert status == 422 and "command" in body["message"], body
        status, body, _ = server.call("POST", "/threads/prune", {"thread_ids": [], "strategy": "x"})
        assert status == 422 and "strategy" in body["message"], body


async def _collect(stream, parts: list, done: Callable[[list], bool], seconds: float) -> None:
    """Read a thread stream (which stays open) into `parts` until `done(parts)` or `seconds`."""
    async def read() -> None:
        async for part in await stream:
            parts.append(part)
            if done(parts):
                return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(read(), seconds)


def _runs_done(count: int) -> Callable[[list], bool]:
    return lambda parts: sum(p.event == "metadata" and p.data.get("status") == "run_done"
                             for p in parts) >= count


async def thread_stream(one: str, two: str) -> None:
    """A thread stream joined on one process follows the runs another process executes, and the
    state updates made through it; resumes after Last-Event-ID; is the caller's thread only."""
    a, b = get_client(url=one, api_key="key-one"), get_client(url=two, api_key="key-one")
    tid = (await a.threads.create())["thread_id"]
    with pytest.raises(httpx.HTTPStatusError) as refused:  # another key's thread: not found
        async for _ in await get_client(url=one, api_key="key-two").threads.join_stream(tid):
            pass
    assert refused.value.response.status_code == 404

    parts: list = []
    follower = asyncio.create_task(_collect(
        a.threads.join_stream(tid, stream_mode=["run_modes", "state_update"]), parts,
        lambda p: _runs_done(2)(p) and any(x.event == "state_update" for x in p), 30))
    await asyncio.sleep(1)
    created = await b.runs.create(tid, "slow", input={"text": "one", "seconds": 0.3})
    await b.runs.join(tid, created["run_id"])
    await b.runs.wait(tid, "slow", input={"text": "two"})  # a run that records no events
    await b.threads.update_state(tid, {"text": "edited"})
    await follower
    names = [p.event for p in parts]
    assert parts[0].event == "metadata" and parts[0].data == {"run_id": created["run_id"], "attempt": 1}
    assert "values" in names
    done = [p.data["run_id"] for p in parts if p.data.get("status") == "run_done"]
    assert done[0] == created["run_id"] and len(done) == 2 and done[1] != created["run_id"]
    update = next(p for p in parts if p.event == "state_update")
    assert update.data["thread_id"] == tid and update.data["state"]["values"]["text"] == "edited"
    # (a state update has no id of its own: SSE clients keep the last one)
    ids = [tuple(map(int, p.id.split("-"))) for p in parts if p.event != "state_update"]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids

    # after Last-Event-ID: exactly what followed that event (from another process)
    resumed: list = []
    await _collect(a.threads.join_stream(tid, last_event_id=parts[1].id), resumed,
                   _runs_done(2), 20)
    assert [(p.event, p.id) for p in resumed] == [
        (p.event, p.id) for p in parts[2:] if p.event != "state_update"]

    # lifecycle: only each run's start and end
    lifecycle: list = []
    follower = asyncio.create_task(_collect(a.threads.join_stream(tid, stream_mode="lifecycle"),
                                            lifecycle, _runs_done(1), 20))
    await asyncio.sleep(1)
    again = await b.runs.create(tid, "slow", input={"text": "three"})
    await follower
    assert [(p.event, p.data) for p in lifecycle] == [
        ("metadata", {"run_id": again["run_id"], "attempt": 1}),
        ("metadata", {"status": "run_done", "run_id": again["run_id"]})]


async def strict_resume(base: str) -> None:
    """`strict_resume` (the JS client's `strictResume`): a resume that answers no waiting
    interrupt fails the run and leaves the thread as it was; one that does, resumes."""
    client = get_client(url=base, api_key="key-one")
    tid = (await client.threads.create())["thread_id"]
    await client.runs.wait(tid, "slow", input={"text": "x"})
    before = await client.threads.get_state(tid)
    failed = await client.runs.wait(tid, "slow", command={"resume": "yes"}, strict_resume=True,
                                    raise_error=False)
    assert failed["__error__"]["message"].startswith("UnknownInterruptError"), failed
    after = await client.threads.get_state(tid)
    assert after["checkpoint"] == before["checkpoint"]
    refused = tid  # its last run failed: the thread's status is `error`

    tid = (await client.threads.create())["thread_id"]
    paused = await client.runs.wait(tid, "approve", input={"text": "x"})
    waiting = paused["__interrupt__"][0]["id"]
    # the run paused at interrupt() succeeded (as on the Platform); its thread is interrupted
    assert (await client.runs.list(tid))[0]["status"] == "success"
    assert [t["thread_id"] for t in await client.threads.search(status="interrupted")] == [tid]
    failed = (await client.threads.create())["thread_id"]
    await client.runs.wait(failed, "fails", input={"question": "x"}, raise_error=False)
    assert {t["thread_id"] for t in await client.threads.search(status="error")} == {failed, refused}
    assert (await client.threads.get(failed))["status"] == "error"
    wrong = await client.runs.wait(tid, "approve", command={"resume": {"0" * 32: "yes"}},
                                   strict_resume=True, raise_error=False)
    assert "0" * 32 in wrong["__error__"]["message"] and waiting in wrong["__error__"]["message"]
    resumed = await client.runs.wait(tid, "approve", command={"resume": {waiting: "yes"}},
                                     strict_resume=True)
    assert resumed["log"][-1] == "decision:yes"


async def thread_ttl(base: str) -> None:
    """A thread's own TTL: `delete` removes it, `keep_latest` keeps only its latest state; a
    thread whose TTL was set later by update, or that has none, stays."""
    client = get_client(url=base, api_key="key-one")
    gone = (await client.threads.create(ttl=0.05))["thread_id"]  # 3 s
    kept = (await client.threads.create(ttl={"ttl": 0.05, "strategy": "keep_latest"}))["thread_id"]
    later = (await client.threads.create(ttl=0.05))["thread_id"]
    for tid in (gone, kept, later):
        await client.runs.wait(tid, "slow", input={"text": "a"})
        await client.runs.wait(tid, "slow", input={"text": "b"})
    await client.threads.update(later, metadata={"kept": True}, ttl=60)  # from now: 1 h
    for _ in range(60):
        await asyncio.sleep(0.5)
        if (not await client.threads.search(ids=[gone])
                and len(await client.threads.get_history(kept, limit=50)) == 1):
            break
    assert await client.threads.search(ids=[gone]) == []
    assert len(await client.threads.get_history(kept, limit=50)) == 1
    assert (await client.threads.get_state(kept))["values"]["log"] == ["in:a", "out:a", "in:b", "out:b"]
    await client.runs.wait(kept, "slow", input={"text": "c"})  # it no longer expires, and runs
    assert len(await client.threads.get_history(later, limit=50)) > 1


def test_the_thread_stream_follows_every_run_and_state_update_across_processes(database):
    with runtime_server(database) as one, runtime_server(database,
                                                        THREAD_TTL_SWEEP_SECONDS="0.5") as two:
        asyncio.run(thread_stream(one.base, two.base))
        asyncio.run(strict_resume(two.base))
        asyncio.run(thread_ttl(two.base))
        status, body, _ = one.call("GET", f"/threads/{uuid.uuid4()}/stream?stream_mode=all")
        assert status == 422 and "run_modes" in body["message"], body
