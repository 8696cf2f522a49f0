"""The store's scoping as a library (no server): OwnedStore over LangGraph's in-memory store. Each
identity reaches only its own items, by every operation; answers never show the identity label;
outside a run and without an identity nothing is reached. (Across keys through the HTTP API and
from runs: test_isolation.py; the SDK's calls side by side with langgraph dev: test_conformance.py.)"""

from __future__ import annotations

import asyncio
import os

import pytest
from agentgen_runtime.surfaces.store import OWNER, NoOwner, OwnedStore
from langgraph.store.memory import InMemoryStore


def test_each_identity_reaches_only_its_own_items():
    inner = InMemoryStore()
    a, b = OwnedStore(inner).for_owner("key-a"), OwnedStore(inner).for_owner("key-b")

    async def scenario():
        await a.aput(("m", "p"), "f", {"c": "blue"})
        await a.aput(("m", "q"), "d", {"t": "secret"})
        await b.aput(("m", "p"), "f", {"c": "red"})
        await b.adelete(("m", "q"), "d")  # a's item: untouched
        return {
            "a get": (await a.aget(("m", "p"), "f")).dict(),
            "b get": (await b.aget(("m", "p"), "f")).value,
            "b other": await b.aget(("m", "q"), "d"),
            "a kept": (await a.aget(("m", "q"), "d")).value,
            "b search": [(i.namespace, i.value) for i in await b.asearch(("m",))],
            "b search all": [i.key for i in await b.asearch(())],
            "a namespaces": await a.alist_namespaces(),
            "a prefix": await a.alist_namespaces(prefix=("m",), limit=1, offset=1),
            "a depth": await a.alist_namespaces(max_depth=1),
            "a suffix": await a.alist_namespaces(suffix=("q",)),
            "stored": await inner.alist_namespaces(prefix=("key-a",)),
        }

    seen = asyncio.run(scenario())
    assert seen["a get"]["namespace"] == ["m", "p"] and seen["a get"]["value"] == {"c": "blue"}
    assert seen["b get"] == {"c": "red"} and seen["b other"] is None
    assert seen["a kept"] == {"t": "secret"}
    assert seen["b search"] == [(("m", "p"), {"c": "red"})] and seen["b search all"] == ["f"]
    assert seen["a namespaces"] == [("m", "p"), ("m", "q")]
    assert seen["a prefix"] == [("m", "q")]
    assert seen["a depth"] == [("m",)] and seen["a suffix"] == [("m", "q")]
    assert seen["stored"] == [("key-a", "m", "p"), ("key-a", "m", "q")]  # one label below


def test_inside_a_run_the_runs_identity_outside_none():
    inner = InMemoryStore()
    store = OwnedStore(inner)
    OwnedStore(inner).for_owner("key-a").put(("m",), "k", {"v": 1})

    async def in_run():
        token = OWNER.set("key-a")
        try:
            # as a node reads it: async, and sync from a thread (a sync node)
            return ((await store.aget(("m",), "k")).value,
                    await asyncio.to_thread(lambda: store.get(("m",), "k").value))
        finally:
            OWNER.reset(token)

    assert asyncio.run(in_run()) == ({"v": 1}, {"v": 1})
    with pytest.raises(NoOwner):
        store.get(("m",), "k")


@pytest.mark.slow
def test_an_item_put_with_a_ttl_expires_and_bad_namespaces_are_refused(database):
    """The SDK's `put_item(ttl=)` without any `store.ttl` in langgraph.json: answered until its
    minutes pass, then never (get, search); `refresh_ttl` on a read moves its expiry. A namespace
    label with a period, an empty one, or no namespace is a 422 naming it."""
    import psycopg
    from langgraph_sdk import get_client

    from .helpers import runtime_server

    def expiry(key: str):
        with psycopg.connect(database) as conn:
            return conn.execute("SELECT expires_at FROM store WHERE key = %s", (key,)).fetchone()[0]

    with runtime_server(database) as server:
        async def scenario():
            c = get_client(url=server.base, api_key="key-one")
            await c.store.put_item(["ttl"], "short", {"v": 1}, ttl=0.02)  # 1.2 s
            await c.store.put_item(["ttl"], "kept", {"v": 2}, ttl=1)
            await c.store.put_item(["ttl"], "forever", {"v": 3})
            first = await c.store.get_item(["ttl"], "short")
            before = expiry("kept")
            await asyncio.sleep(1.5)
            unrefreshed = await c.store.get_item(["ttl"], "kept", refresh_ttl=False)
            assert expiry("kept") == before
            await c.store.get_item(["ttl"], "kept", refresh_ttl=True)
            return first, (expiry("kept") - before).total_seconds(), {
                "short": await c.store.get_item(["ttl"], "short"),
                "kept": unrefreshed["value"],
                "search": sorted(i["key"] for i in (await c.store.search_items(["ttl"]))["items"]),
            }

        first, moved, later = asyncio.run(scenario())
        assert first["value"] == {"v": 1}
        assert later == {"short": None, "kept": {"v": 2}, "search": ["forever", "kept"]}, later
        assert moved >= 1.5, moved  # the read pushed its expiry a minute from then

        for method, path, body, field in (
            ("PUT", "/store/items", {"namespace": ["a.b"], "key": "k", "value": {}}, "namespace"),
            ("PUT", "/store/items", {"namespace": [""], "key": "k", "value": {}}, "namespace"),
            ("PUT", "/store/items", {"namespace": [], "key": "k", "value": {}}, "namespace"),
            ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": {}, "ttl": -1}, "ttl"),
            ("POST", "/store/items/search", {"namespace_prefix": ["a"], "limit": 0}, "limit"),
            ("GET", "/store/items?namespace=a..b&key=k", None, "namespace"),
        ):
            status, answer, _ = server.call(method, path, body)
            assert status == 422 and field in answer["message"], (path, body, answer)


@pytest.mark.slow
def test_semantic_search_finds_items_by_meaning_on_pgvector(pgvector):
    """langgraph.json `store.index` (a deterministic embedding written for the tests, in
    weather_agent/embed.py) on a PostgreSQL with pgvector: items are found by what they mean, not
    by their words, for each key its own."""
    from langgraph_sdk import get_client

    from .helpers import WEATHER, runtime_server

    database = pgvector.create_database("semantic")
    with runtime_server(database, LANGGRAPH_CONFIG=str(WEATHER / "langgraph.store.json")) as server:
        async def scenario():
            one, two = (get_client(url=server.base, api_key=key) for key in ("key-one", "key-two"))
            notes = ["notes"]
            await one.store.put_item(notes, "pet", {"text": "my kitten purrs on the sofa"})
            await one.store.put_item(notes, "sky", {"text": "take an umbrella, drizzle later"})
            await one.store.put_item(notes, "meal", {"text": "pizza for dinner tonight"})
            await two.store.put_item(notes, "theirs", {"text": "a feline of their own"})
            found = {}
            for query in ("feline", "storm forecast", "hungry", "airport"):
                items = (await one.store.search_items(notes, query=query, limit=3))["items"]
                found[query] = [(i["key"], round(i["score"], 2)) for i in items]
            found["two"] = [i["key"] for i in
                            (await two.store.search_items(notes, query="feline"))["items"]]
            return found

        found = asyncio.run(scenario())
    assert found["feline"][0][0] == "pet" and found["feline"][0][1] > 0.9, found
    assert found["storm forecast"][0][0] == "sky", found
    assert found["hungry"][0][0] == "meal", found
    assert all(score < 0.5 for _, score in found["airport"]), found  # nothing is about travel
    assert found["two"] == ["theirs"], found


@pytest.mark.slow
def test_store_index_without_pgvector_refuses_to_start_in_one_line(database):
    """Debian's PostgreSQL here has no pgvector: a server asked for semantic search says so in one
    line naming the extension and what to install, and does not start."""
    import subprocess
    import sys

    from ..servers import free_port
    from .helpers import WEATHER, runtime_env

    env = {**os.environ, **runtime_env(database, PORT=str(free_port()),
                                       LANGGRAPH_CONFIG=str(WEATHER / "langgraph.store.json"))}
    done = subprocess.run([sys.executable, "-m", "agentgen_runtime"], cwd=WEATHER, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pgvector" in lines[0] and "store.index" in lines[0], done.stderr


def test_an_embedding_the_server_cannot_load_is_one_line_at_start_up(tmp_path):
    """store.index.embed as a provider string needs langchain (and the provider's package) in the
    project: without them the start-up stops with one line naming the key, not a traceback."""
    from agentgen_runtime.app import store_options
    from agentgen_runtime.config import Config, ConfigError

    config = Config(path=tmp_path / "langgraph.json", graphs=(), store={"index": {
        "dims": 3, "embed": "openai:text-embedding-3-small"}})
    with pytest.raises(ConfigError, match=r"store\.index\.embed: .*langchain"):
        store_options(config)
