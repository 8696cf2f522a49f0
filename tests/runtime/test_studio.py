"""LangGraph Studio's contract, side by side with `langgraph dev` on the same graph (one with a
subgraph): what Studio reads before it draws anything (`/info`, the graph with and without xray,
subgraphs, schemas) answers with the same shape, and the same drawing; every stream mode with
`stream_subgraphs` sends the same events (a chat model's tokens and a custom event from inside the
subgraph included); a 3-step run leaves the same history (one state per step)."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
from pathlib import Path

import pytest
from langgraph_sdk import get_client

from .helpers import AGENTS, langgraph_dev, runtime_server

pytestmark = pytest.mark.slow
STUDIO = AGENTS / "studio"
MODES = ("values", "updates", "messages", "messages-tuple", "custom", "events", "debug", "tasks",
         "checkpoints")


def _names(mode: str, parts: list) -> list:
    """What is compared of a stream: its event names in order (for `events`, the callback events
    by kind and name, in order)."""
    if mode == "events":
        return [(p.event, p.data["event"], p.data.get("name")) if p.event == "events" else p.event
                for p in parts]
    return [re.sub(r":[^|]*", "", p.event) for p in parts]  # a namespace without its task id


async def streams(client, assistant: str) -> dict:
    out = {}
    for mode in MODES:
        thread = (await client.threads.create())["thread_id"]
        parts = [part async for part in client.runs.stream(
            thread, assistant, input={"text": "t"}, stream_mode=mode, stream_subgraphs=True)]
        out[mode] = _names(mode, parts)
        last = parts[-1].data if mode in ("values", "custom") else None
        if isinstance(last, dict) and "messages" in last:  # ids differ from server to server
            last = {**last, "messages": [(m["type"], m["content"]) for m in last["messages"]]}
        out[f"{mode}:last"] = last
    thread = (await client.threads.create())["thread_id"]
    await client.runs.wait(thread, assistant, input={"text": "t"})
    history = await client.threads.get_history(thread)
    out["history"] = [(h["next"], h["metadata"]["step"], h["metadata"]["source"],
                       sorted(h["values"])) for h in history]
    return out


async def contract(base: str, api_key: str | None) -> dict:
    client = get_client(url=base, api_key=api_key)
    assistant = (await client.assistants.search(graph_id="nested"))[0]["assistant_id"]
    info = await client.http.get("/info")
    return {
        "assistant": assistant,
        "info": info,
        "graph": await client.assistants.get_graph(assistant),
        "xray": await client.assistants.get_graph(assistant, xray=True),
        "xray1": await client.assistants.get_graph(assistant, xray=1),
        "subgraphs": await client.assistants.get_subgraphs(assistant),
        "recursive": await client.assistants.get_subgraphs(assistant, recurse=True),
        "editor": await client.assistants.get_subgraphs(assistant, namespace="editor"),
        "schemas": await client.assistants.get_schemas(assistant),
        "streams": await streams(client, assistant),
    }


def test_studio_reads_the_same_graph_as_from_langgraph_dev(database):
    config = str(STUDIO / "langgraph.json")
    origin = "https://smith.langchain.com"
    # every step in the history, as Studio shows it (and as the Platform's default durability)
    with runtime_server(database, cwd=STUDIO, LANGGRAPH_CONFIG=config,
                        CORS_ORIGINS=f'["{origin}"]', CHECKPOINT_DURABILITY="async") as server:
        ours = asyncio.run(contract(server.base, "key-one"))
        # Studio in a browser: the preflight admits its key header; a stream's run id is readable
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("OPTIONS", "/threads", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key,content-type"})
        preflight = conn.getresponse()
        preflight.read()
        assert preflight.status == 200
        assert preflight.getheader("access-control-allow-origin") == origin
        assert "x-api-key" in preflight.getheader("access-control-allow-headers").lower()
        conn.request("POST", "/runs/stream", body=json.dumps({"assistant_id": "nested",
                                                              "input": {"text": "t"}}),
                     headers={"Origin": origin, "X-API-Key": "key-one",
                              "Content-Type": "application/json"})
        streamed = conn.getresponse()
        streamed.read()
        assert streamed.status == 200 and streamed.getheader("access-control-allow-origin") == origin
        assert "content-location" in streamed.getheader("access-control-expose-headers").lower()
        conn.close()
        other = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        other.request("OPTIONS", "/threads", headers={
            "Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"})
        refused = other.getresponse()
        refused.read()
        assert refused.getheader("access-control-allow-origin") is None
        other.close()

    with langgraph_dev(STUDIO, Path(config)) as url:
        theirs = asyncio.run(contract(url, None))

    assert ours["assistant"] == theirs["assistant"]  # the Platform's id for the graph
    assert set(ours["info"]) == set(theirs["info"]) and set(ours["info"]["flags"]) <= set(
        theirs["info"]["flags"])
    assert ours["info"]["host"]["kind"] == "self-hosted"
    assert ours["info"]["flags"]["crons"] is True  # every cron method is served: Studio shows them
    for drawing in ("graph", "xray", "xray1"):
        assert ours[drawing] == theirs[drawing], drawing
    assert {n["id"] for n in ours["xray"]["nodes"]} >= {"draft", "editor:polish", "review"}
    for listing in ("subgraphs", "recursive", "editor"):
        assert set(ours[listing]) == set(theirs[listing]) == {"editor"}, listing
        assert set(ours[listing]["editor"]) == set(theirs[listing]["editor"]), listing
    assert set(ours["schemas"]) == set(theirs["schemas"])
    for mode in MODES:  # Studio's stream modes, from inside the subgraph too
        assert ours["streams"][mode] == theirs["streams"][mode], mode
        assert ours["streams"][f"{mode}:last"] == theirs["streams"][f"{mode}:last"], mode
    assert ours["streams"]["messages-tuple"].count("messages|editor") >= 3  # the subgraph's tokens
    assert ours["streams"]["history"] == theirs["streams"]["history"]
    assert len(ours["streams"]["history"]) == 5  # input, draft, editor, review, the end
