"""Threads as the SDK manages them beyond create/get/delete: update (metadata merged), count,
copy (a thread of one's own with the same state and history, diverging afterwards), prune (delete,
or keep only the latest state). Each side by side with what the thread held before."""

from __future__ import annotations

import asyncio

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


def test_update_count_copy_and_prune(database):
    with runtime_server(database) as server:
        asyncio.run(scenario(server.base))
        # options this runtime does not honour are refused, naming them (never dropped)
        status, body, _ = server.call("POST", "/threads/count", {"status": "busy"})
        assert status == 422 and "status" in body["message"], body
        status, body, _ = server.call("POST", "/threads/prune", {"thread_ids": [], "strategy": "x"})
        assert status == 422 and "strategy" in body["message"], body
