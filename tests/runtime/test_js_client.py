"""The JavaScript client (`@langchain/langgraph-sdk` from npm, behind React's `useStream` and Agent
Chat UI) run by node through useStream's calls, against the runtime and against `langgraph dev` on
the same graphs: the same events, history, branch, rejoin and answers; `strictResume` honoured.
Then its own streaming session (`client.threads.stream`, the protocol its new React controller
speaks): an interrupt inside a subgraph answered, a run forked from a checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .helpers import AGENTS, WEATHER, js_sdk, langgraph_dev, runtime_server

pytestmark = pytest.mark.slow
FLOW = Path(__file__).parent / "js" / "use_stream_flow.mjs"
THREAD_STREAM = Path(__file__).parent / "js" / "thread_stream_flow.mjs"
STUDIO = AGENTS / "studio"


def flow(url: str, key: str, strict: bool, script: Path = FLOW) -> dict:
    home = js_sdk()
    copy = home / script.name  # node resolves the SDK from the script's directory
    copy.write_text(script.read_text())
    out = subprocess.run(["node", str(copy), url, key, "1" if strict else "0"], cwd=home,
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "NODE_NO_WARNINGS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_js_client_use_stream_flow_answers_as_under_langgraph_dev(database):
    # the history per step, as the Platform's default durability keeps it (dev's too)
    with runtime_server(database, CHECKPOINT_DURABILITY="async") as server:
        ours = flow(server.base, "key-one", strict=True)
    with langgraph_dev(WEATHER, WEATHER / "langgraph.json", install=WEATHER,  # as conformance
                       WEATHER_API_KEY="test") as url:
        theirs = flow(url, "", strict=False)

    for key in ("stream", "runCreated", "history", "branch", "branchLog", "rejoined", "wait",
                "search", "runs", "resumed"):
        assert ours[key] == theirs[key], key
    assert ours["runCreated"] and ours["branchLog"] == ["in:branch", "out:branch"]
    assert ours["rejoined"] == ours["stream"] and ours["resumed"][-1] == "decision:yes"
    # a strict resume answering no waiting interrupt: the run fails, the thread is as it was
    assert ours["stale"] == ["UnknownInterruptError"]
    assert ours["staleState"] == ours["resumed"]


def test_the_js_client_thread_stream_answers_as_under_langgraph_dev(database):
    config = str(STUDIO / "langgraph.json")
    with runtime_server(database, cwd=STUDIO, LANGGRAPH_CONFIG=config) as server:
        ours = flow(server.base, "key-one", False, THREAD_STREAM)
    with langgraph_dev(STUDIO, Path(config)) as url:
        theirs = flow(url, "", False, THREAD_STREAM)

    assert ours == theirs
    assert ours["interrupts"] == [[["gatekeeper"], {"question": "publish js?"}]]
    assert ours["answered"] == [["success", "success"], ["draft:js", "draft:js", "decision:ship"]]
    assert ours["forkSteps"][2] is True and ours["forkSteps"][1] > ours["forkSteps"][0]
