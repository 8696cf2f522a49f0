"""Assistants as data: created from a graph with config, context and metadata, versioned by each
update, rolled back with set_latest, deleted (with their threads on request), and used by runs
(their context under the run's); each the caller's own, as threads are. The graphs' system
assistants stay as langgraph.json says."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from langgraph_sdk import get_client

from .helpers import runtime_server

pytestmark = pytest.mark.slow
QUESTION = {"question": "rain?"}


async def status_of(call) -> int:
    try:
        await call
    except httpx.HTTPStatusError as exc:
        return exc.response.status_code
    return 200


async def scenario(base: str) -> None:
    client = get_client(url=base, api_key="key-one")
    intruder = get_client(url=base, api_key="key-two")
    system = (await client.assistants.search(graph_id="weather"))[0]
    porto = await client.assistants.create("weather", context={"city": "Porto"}, name="porto",
                                           metadata={"team": "a"}, description="Porto's forecasts")
    aid = porto["assistant_id"]
    assert (porto["graph_id"], porto["name"], porto["version"], porto["context"]) == (
        "weather", "porto", 1, {"city": "Porto"})
    assert await client.assistants.get(aid) == porto

    # runs take the assistant's context; the run's own context wins key by key
    tid = (await client.threads.create())["thread_id"]
    ran = await client.runs.wait(tid, aid, input=QUESTION)
    assert ran["answers"][0].startswith("weather-model-1 in Porto"), ran
    ran = await client.runs.wait(tid, aid, input=QUESTION, context={"city": "Faro"})
    assert ran["answers"][-1].startswith("weather-model-1 in Faro"), ran
    assert (await client.runs.list(tid))[0]["assistant_id"] == aid

    # search and count: the caller's assistants and the system ones
    found = await client.assistants.search(metadata={"team": "a"})
    assert [a["assistant_id"] for a in found] == [aid]
    assert {a["assistant_id"] for a in await client.assistants.search(graph_id="weather")} == {
        aid, system["assistant_id"]}
    assert await client.assistants.count(graph_id="weather") == 2
    assert await client.assistants.search(graph_id="weather", select=["assistant_id", "name"],
                                          sort_by="name", sort_order="asc") == [
        {"assistant_id": aid, "name": "porto"},
        {"assistant_id": system["assistant_id"], "name": "weather"}]

    # versions: each update is one; set_latest goes back
    lisbon = await client.assistants.update(aid, context={"city": "Lisbon"}, metadata={"v": 2})
    assert (lisbon["version"], lisbon["context"], lisbon["metadata"]) == (
        2, {"city": "Lisbon"}, {"team": "a", "v": 2})
    assert [v["version"] for v in await client.assistants.get_versions(aid)] == [2, 1]
    ran = await client.runs.wait(tid, aid, input=QUESTION)
    assert ran["answers"][-1].startswith("weather-model-1 in Lisbon"), ran
    back = await client.assistants.set_latest(aid, 1)
    assert (back["version"], back["context"]) == (1, {"city": "Porto"})
    assert (await client.assistants.get(aid))["context"] == {"city": "Porto"}
    assert await status_of(client.assistants.set_latest(aid, 9)) == 404

    # another key reaches none of it
    for call in (intruder.assistants.get(aid), intruder.assistants.update(aid, name="mine"),
                 intruder.assistants.delete(aid), intruder.assistants.get_versions(aid),
                 intruder.assistants.set_latest(aid, 2), intruder.assistants.get_schemas(aid),
                 intruder.assistants.get_graph(aid),
                 intruder.runs.wait(None, aid, input=QUESTION)):
        assert await status_of(call) == 404
    assert await intruder.assistants.search(metadata={"team": "a"}) == []
    assert await intruder.assistants.count(graph_id="weather") == 1
    assert await status_of(intruder.assistants.create("weather", assistant_id=aid)) == 409
    assert (await client.assistants.get(aid))["name"] == "porto"

    # what is refused, in one line each
    assert await status_of(client.assistants.create("no-such-graph")) == 404
    assert await status_of(client.assistants.update(system["assistant_id"], name="x")) == 409
    assert await status_of(client.assistants.delete(system["assistant_id"])) == 409
    assert await status_of(client.assistants.create("weather", assistant_id=aid)) == 409
    same = await client.assistants.create("weather", assistant_id=aid, if_exists="do_nothing")
    assert same["assistant_id"] == aid and same["version"] == 1

    # delete, with the threads it ran on
    await client.assistants.delete(aid, delete_threads=True)
    assert await status_of(client.assistants.get(aid)) == 404
    assert await status_of(client.threads.get(tid)) == 404
    assert await status_of(client.runs.wait(None, aid, input=QUESTION)) == 404


def test_assistants_are_versioned_configurations_of_a_graph_owned_by_their_key(database):
    with runtime_server(database) as server:
        asyncio.run(scenario(server.base))
