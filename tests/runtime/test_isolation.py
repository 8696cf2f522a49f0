"""Ownership across API keys, route by route: a second key gets 404 (or an empty answer) for every
route that names a thread or a run of the first, whatever the body says. The list of routes is
read from the server's own OpenAPI document, so a route added without a case here fails the test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from .helpers import WEATHER, runtime_server

pytestmark = pytest.mark.slow
OWNER, INTRUDER = "key-one", "key-two"
# Routes that name nothing owned (the graphs are shared by every key).
UNOWNED = {"/assistants/search", "/assistants/{assistant_id}", "/assistants/{assistant_id}/schemas",
           "/threads", "/runs", "/runs/wait", "/runs/stream", "/runs/batch", "/runs/crons"}


@pytest.fixture(scope="module")
def owned(database):
    with _owned(database, OWNER) as found:
        yield found


# Who owns and who intrudes, and how the server is told apart: API keys (the default), or the
# custom auth handlers of the test agent (langgraph.json auth.path: bearer tokens, owner filters).
IDENTITIES = {
    "api keys": (OWNER, INTRUDER, {}),
    "custom auth": ("Bearer token-alice", "Bearer token-bob",
                    {"LANGGRAPH_CONFIG": str(WEATHER / "langgraph.auth.json"), "API_KEYS": ""}),
}


@pytest.fixture(scope="module", params=list(IDENTITIES))
def owned_by(request, postgres):
    owner, intruder, env = IDENTITIES[request.param]
    database = postgres.create_database(f"rt_isolation_{request.param.replace(' ', '_')}")
    with _owned(database, owner, **env) as (server, tid, rid):
        yield server, tid, rid, owner, intruder


@contextlib.contextmanager
def _owned(database: str, owner: str, **env: str) -> Iterator[tuple[Any, str, str]]:
    """A server, and a thread of `owner`'s with one finished run."""
    with runtime_server(database, RUN_LEASE_SECONDS="3", DOCS_ENABLED="true", **env) as server:
        status, thread, _ = server.call("POST", "/threads", {}, key=owner)
        assert status == 200, thread
        tid = thread["thread_id"]
        status, _, _ = server.call("POST", f"/threads/{tid}/runs/wait",
                                   {"assistant_id": "weather", "input": {"question": "secret?"}},
                                   key=owner)
        assert status == 200
        status, runs, _ = server.call("GET", f"/threads/{tid}/runs", key=owner)
        assert status == 200 and len(runs) == 1, runs
        yield server, tid, runs[0]["run_id"]


def _cases(tid: str, rid: str, own: str, cid: str) -> list[tuple[str, str, str, object]]:
    """(route template, method, concrete path, body) for every route naming a thread, a run or a
    cron."""
    run = {"assistant_id": "weather", "input": {"question": "mine now?"}}
    return [
        ("/threads/{thread_id}/runs/crons", "POST", f"/threads/{tid}/runs/crons",
         {**run, "schedule": "* * * * *"}),
        ("/runs/crons/{cron_id}", "GET", f"/runs/crons/{cid}", None),
        ("/runs/crons/{cron_id}", "PATCH", f"/runs/crons/{cid}", {"schedule": "* * * * *"}),
        ("/runs/crons/{cron_id}", "DELETE", f"/runs/crons/{cid}", None),
        ("/threads/{thread_id}", "GET", f"/threads/{tid}", None),
        ("/threads/{thread_id}", "DELETE", f"/threads/{tid}", None),
        ("/threads/{thread_id}", "PATCH", f"/threads/{tid}", {"metadata": {"taken": True}}),
        ("/threads/{thread_id}/copy", "POST", f"/threads/{tid}/copy", None),
        ("/threads/{thread_id}/state", "GET", f"/threads/{tid}/state", None),
        ("/threads/{thread_id}/state/{checkpoint_id}", "GET", f"/threads/{tid}/state/x", None),
        ("/threads/{thread_id}/state", "POST", f"/threads/{tid}/state",
         {"values": {"question": "overwritten"}}),
        ("/threads/{thread_id}/history", "GET", f"/threads/{tid}/history", None),
        ("/threads/{thread_id}/history", "POST", f"/threads/{tid}/history", {}),
        ("/threads/{thread_id}/stream", "GET", f"/threads/{tid}/stream", None),
        ("/threads/{thread_id}/stream/events", "POST", f"/threads/{tid}/stream/events",
         {"channels": ["values", "lifecycle"]}),
        ("/threads/{thread_id}/commands", "POST", f"/threads/{tid}/commands",
         {"id": 1, "method": "run.start", "params": run}),
        ("/threads/{thread_id}/commands", "POST", f"/threads/{tid}/commands",
         {"id": 2, "method": "input.respond", "params": {"interrupt_id": "x", "response": 1}}),
        ("/threads/{thread_id}/runs", "GET", f"/threads/{tid}/runs", None),
        ("/threads/{thread_id}/runs", "POST", f"/threads/{tid}/runs", run),
        ("/threads/{thread_id}/runs/wait", "POST", f"/threads/{tid}/runs/wait", run),
        ("/threads/{thread_id}/runs/stream", "POST", f"/threads/{tid}/runs/stream", run),
        ("/threads/{thread_id}/runs/{run_id}", "GET", f"/threads/{tid}/runs/{rid}", None),
        ("/threads/{thread_id}/runs/{run_id}", "DELETE", f"/threads/{tid}/runs/{rid}", None),
        ("/threads/{thread_id}/runs/{run_id}/join", "GET", f"/threads/{tid}/runs/{rid}/join", None),
        ("/threads/{thread_id}/runs/{run_id}/stream", "GET", f"/threads/{tid}/runs/{rid}/stream",
         None),
        ("/threads/{thread_id}/runs/{run_id}/cancel", "POST",
         f"/threads/{tid}/runs/{rid}/cancel", None),
        # the run under the intruder's own thread: a run id is not a capability either
        ("/threads/{thread_id}/runs/{run_id}", "GET", f"/threads/{own}/runs/{rid}", None),
        ("/threads/{thread_id}/runs/{run_id}/join", "GET", f"/threads/{own}/runs/{rid}/join", None),
        # a body that names the other thread (the checkpoint's thread_id once replaced the
        # authorised one)
        ("/threads/{thread_id}/history", "POST", f"/threads/{own}/history",
         {"checkpoint": {"thread_id": tid}}),
        ("/threads/{thread_id}/history", "POST", f"/threads/{own}/history",
         {"before": {"thread_id": tid, "checkpoint_id": "ffffffff"}}),
        ("/threads/{thread_id}/state", "POST", f"/threads/{own}/state",
         {"values": {"question": "x"}, "checkpoint": {"thread_id": tid}}),
        ("/threads/{thread_id}/runs/wait", "POST", f"/threads/{own}/runs/wait",
         {**run, "config": {"configurable": {"thread_id": tid}}}),
    ]


def test_a_second_identity_reaches_nothing_of_the_first(owned_by):
    """Route by route, for an API key against another, and for a custom auth user against
    another (every route authorizes its operation: one that forgot would answer 500)."""
    server, tid, rid, OWNER, INTRUDER = owned_by  # noqa: N806 - the module's names, per identity
    status, own_thread, _ = server.call("POST", "/threads", {}, key=INTRUDER)
    own = own_thread["thread_id"]
    status, spec, _ = server.call("GET", "/openapi.json", key=OWNER)
    assert status == 200
    routes = {(path, method.upper()) for path, item in spec["paths"].items() for method in item
              if path not in UNOWNED and path.startswith(("/threads", "/runs"))}
    status, cron, _ = server.call("POST", f"/threads/{tid}/runs/crons", {
        "assistant_id": "weather", "schedule": "0 0 1 1 *", "input": {"question": "secret?"}},
        key=OWNER)
    assert status == 200, cron
    cases = _cases(tid, rid, own, cron["cron_id"])
    checked_below = {("/runs/cancel", "POST"), ("/threads/search", "POST"), ("/threads/count", "POST"),
                     ("/threads/prune", "POST"), ("/runs/crons/search", "POST"),
                     ("/runs/crons/count", "POST")}
    assert routes - {(route, method) for route, method, _, _ in cases} - checked_below == set(), \
        "routes without an isolation case"

    for route, method, path, body in cases:
        status, answer, _ = server.call(method, path, body, key=INTRUDER)
        if path.startswith(f"/threads/{own}"):
            # the intruder's own thread answers, but with nothing of the owner's
            assert status in (200, 404, 422), (route, path, status, answer)
            assert "secret?" not in str(answer), (route, path, body, answer)
        else:
            assert status == 404, (route, method, path, status, answer)

    # the intruder's cancel-many with the owner's ids cancels nothing, search finds nothing
    status, _, _ = server.call("POST", "/runs/cancel", {"run_ids": [rid]}, key=INTRUDER)
    assert status in (204, 404)
    status, _, _ = server.call("POST", "/runs/cancel", {"thread_id": tid}, key=INTRUDER)
    assert status == 404
    status, found, _ = server.call("POST", "/threads/search", {"ids": [tid]}, key=INTRUDER)
    assert status == 200 and found == []
    status, counted, _ = server.call("POST", "/threads/count", {}, key=INTRUDER)
    assert status == 200 and counted == 1, counted  # its own thread only
    for body in ({}, {"thread_id": tid}, {"assistant_id": "weather"}):
        status, found, _ = server.call("POST", "/runs/crons/search", body, key=INTRUDER)
        assert status == 200 and found == [], (body, found)
        status, counted, _ = server.call("POST", "/runs/crons/count", body, key=INTRUDER)
        assert status == 200 and counted == 0, (body, counted)
    for strategy in ("keep_latest", "delete"):
        status, pruned, _ = server.call("POST", "/threads/prune",
                                        {"thread_ids": [tid], "strategy": strategy}, key=INTRUDER)
        assert status == 200 and pruned == {"pruned_count": 0}, pruned

    # the owner still has everything, unchanged
    status, state, _ = server.call("GET", f"/threads/{tid}/state", key=OWNER)
    assert status == 200 and state["values"]["question"] == "secret?", state
    status, history, _ = server.call("POST", f"/threads/{tid}/history", {}, key=OWNER)
    assert status == 200 and history and all(h["checkpoint"]["thread_id"] == tid for h in history)
    status, thread, _ = server.call("GET", f"/threads/{tid}", key=OWNER)
    assert status == 200 and "taken" not in thread["metadata"], thread
    status, run, _ = server.call("GET", f"/threads/{tid}/runs/{rid}", key=OWNER)
    assert status == 200 and run["status"] == "success"
    status, kept, _ = server.call("GET", f"/runs/crons/{cron['cron_id']}", key=OWNER)
    assert status == 200 and kept["schedule"] == "0 0 1 1 *", kept


def test_a_thread_id_deleted_and_taken_by_another_key_is_not_reachable_through_any_replica(database):
    """Ownership is decided by each query, never remembered by a process: the owner deletes a
    thread through one replica, another key creates the same id through the other; the first key,
    whose earlier calls went through the first replica, reaches nothing of the new thread there."""
    with runtime_server(database) as first, runtime_server(database) as second:
        tid = "shared-name-thread"
        run = {"assistant_id": "weather", "input": {"question": "mine?"}}
        assert first.call("POST", "/threads", {"thread_id": tid}, key=OWNER)[0] == 200
        assert first.call("POST", f"/threads/{tid}/runs/wait", run, key=OWNER)[0] == 200
        assert first.call("GET", f"/threads/{tid}/state", key=OWNER)[0] == 200
        assert second.call("DELETE", f"/threads/{tid}", key=OWNER)[0] == 204
        assert second.call("POST", "/threads", {"thread_id": tid}, key=INTRUDER)[0] == 200
        status, _, _ = second.call("POST", f"/threads/{tid}/runs/wait",
                                   {**run, "input": {"question": "theirs?"}}, key=INTRUDER)
        assert status == 200

        for method, path, body in (
                ("GET", f"/threads/{tid}", None), ("GET", f"/threads/{tid}/state", None),
                ("POST", f"/threads/{tid}/history", {}), ("GET", f"/threads/{tid}/runs", None),
                ("POST", f"/threads/{tid}/runs/wait", run),
                ("POST", f"/threads/{tid}/state", {"values": {"question": "overwritten"}})):
            status, answer, _ = first.call(method, path, body, key=OWNER)
            assert status == 404, (method, path, status, answer)
        status, state, _ = second.call("GET", f"/threads/{tid}/state", key=INTRUDER)
        assert status == 200 and state["values"]["question"] == "theirs?", state
        # the deleted thread's checkpoints went with it: the new owner's history is its own
        status, history, _ = second.call("POST", f"/threads/{tid}/history", {"limit": 100},
                                         key=INTRUDER)
        assert status == 200 and "mine?" not in str(history), history


STORE_ROUTES = {("/store/items", "PUT"), ("/store/items", "GET"), ("/store/items", "DELETE"),
                ("/store/items/search", "POST"), ("/store/namespaces", "POST")}


def test_each_key_has_its_own_store_from_the_api_and_from_its_runs(owned):
    """The SDK's store methods with two keys on one namespace: each key reads, searches, lists
    and deletes only its own items, and a run's graph (get_store()) sees its creator's store."""
    from langgraph_sdk import get_client

    server, _, _ = owned
    status, spec, _ = server.call("GET", "/openapi.json", key=OWNER)
    routes = {(path, method.upper()) for path, item in spec["paths"].items() for method in item
              if path.startswith("/store")}
    assert routes == STORE_ROUTES, "store routes without an isolation case"

    async def scenario():
        one, two = (get_client(url=server.base, api_key=key) for key in (OWNER, INTRUDER))
        profile = ["memories", "profile"]
        await one.store.put_item(profile, "favourite", {"colour": "blue"})
        await one.store.put_item(["memories", "private"], "diary", {"text": "secret?"})
        await two.store.put_item(profile, "favourite", {"colour": "red"})
        seen = {
            "one get": (await one.store.get_item(profile, "favourite"))["value"],
            "two get": (await two.store.get_item(profile, "favourite"))["value"],
            "two get private": await two.store.get_item(["memories", "private"], "diary"),
            "two search": [i["value"] for i in (await two.store.search_items(["memories"]))["items"]],
            "one search": sorted(i["key"] for i in (await one.store.search_items(["memories"]))["items"]),
            "two namespaces": (await two.store.list_namespaces())["namespaces"],
            "one namespaces": sorted((await one.store.list_namespaces(prefix=["memories"]))["namespaces"]),
            "one depth 1": (await one.store.list_namespaces(max_depth=1))["namespaces"],
        }
        await two.store.delete_item(["memories", "private"], "diary")  # not its item: nothing
        seen["one kept"] = (await one.store.get_item(["memories", "private"], "diary"))["value"]
        # runs: each key's graph reads its own favourite and writes into its own store
        for name, c in (("one", one), ("two", two)):
            result = await c.runs.wait(None, "memory", input={"text": f"by {name}"})
            seen[f"{name} run"] = result["log"]
            seen[f"{name} last"] = (await c.store.get_item(["memories", "runs"], "last"))["value"]
        return seen

    seen = asyncio.run(scenario())
    assert seen["one get"] == {"colour": "blue"} and seen["two get"] == {"colour": "red"}
    assert seen["two get private"] is None
    assert seen["two search"] == [{"colour": "red"}]
    assert seen["one search"] == ["diary", "favourite"]
    assert seen["two namespaces"] == [["memories", "profile"]]
    assert seen["one namespaces"] == [["memories", "private"], ["memories", "profile"]]
    assert seen["one depth 1"] == [["memories"]]
    assert seen["one kept"] == {"text": "secret?"}
    assert seen["one run"] == ["favourite:blue"] and seen["two run"] == ["favourite:red"]
    assert seen["one last"] == {"text": "by one"} and seen["two last"] == {"text": "by two"}
