"""langgraph.json as the runtime reads it (library level, no server)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from agentgen_runtime.config import ConfigError, apply, load_config
from agentgen_runtime.graphs import load_graphs

from .helpers import WEATHER


def write(tmp_path: Path, config: dict, **files: str) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    path = tmp_path / "langgraph.json"
    path.write_text(json.dumps(config))
    return path


GRAPH = """
from langgraph.graph import StateGraph, START, END
from typing import TypedDict

class S(TypedDict):
    x: int

def build():
    b = StateGraph(S)
    b.add_node("inc", lambda s: {"x": s["x"] + 1})
    b.add_edge(START, "inc")
    b.add_edge("inc", END)
    return b

graph = build().compile()
builder = build()

async def make():
    return build().compile()

not_a_graph = 42
"""


def test_env_file_and_mapping_are_loaded_without_overriding_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ALREADY_SET", "from the environment")
    path = write(tmp_path, {"graphs": {"g": "./agent.py:graph"}, "env": "./deploy.env"},
                 **{"agent.py": GRAPH, "deploy.env": "FROM_FILE=yes\nALREADY_SET=from the file\n"})
    config = load_config(path)
    assert config.env == {"FROM_FILE": "yes", "ALREADY_SET": "from the file"}
    monkeypatch.delenv("FROM_FILE", raising=False)
    apply(config)
    assert os.environ["FROM_FILE"] == "yes" and os.environ["ALREADY_SET"] == "from the environment"
    # a missing env file (e.g. a git-ignored .env in an image) is no error
    assert load_config(write(tmp_path, {"graphs": {"g": "./agent.py:graph"}, "env": ".env"})).env == {}


def test_graphs_compiled_builders_and_async_factories(tmp_path):
    path = write(tmp_path, {"graphs": {"agent": "./agent.py:graph", "builder": "./agent.py:builder",
                                       "factory": "./agent.py:make"}}, **{"agent.py": GRAPH})
    graphs = asyncio.run(load_graphs(load_config(path)))
    for graph in graphs.values():
        assert asyncio.run(graph.compiled.ainvoke({"x": 1})) == {"x": 2}
    # assistant ids are derived from graph ids as LangGraph Platform derives them
    assert graphs["agent"].assistant_id == "fe096781-5601-53d2-b2f6-0d3403f7e9ca"


@pytest.mark.parametrize(("location", "message"), [
    ("./missing.py:graph", "no such file"),
    ("./agent.py:nope", "has no attribute 'nope'"),
    ("./agent.py:not_a_graph", "not a graph"),
])
def test_a_graph_that_cannot_load_is_named(tmp_path, location, message):
    path = write(tmp_path, {"graphs": {"broken": location}}, **{"agent.py": GRAPH})
    with pytest.raises(ConfigError, match=message):
        asyncio.run(load_graphs(load_config(path)))


@pytest.mark.parametrize(("text", "message"), [
    ("{", "Expecting"), ("[]", "not a JSON object"), ('{"graphs": {}}', "declares no graphs"),
    ('{"graphs": {"g": 3}}', "graphs.g"), ('{"graphs": {"g": "./a.py:g"}, "env": 3}', "env"),
])
def test_a_bad_langgraph_json_is_one_clear_error(tmp_path, text, message):
    path = tmp_path / "langgraph.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_the_weather_agent_config(monkeypatch):
    config = load_config(WEATHER / "langgraph.json")
    assert [g.graph_id for g in config.graphs] == ["weather", "fails", "per_run", "slow", "approve",
                                                   "memory"]
    assert config.http_app == "./src/weather_agent/webapp.py:app"
    assert config.env["WEATHER_UNITS"] == "celsius"


def test_a_graph_path_absent_from_an_image_is_its_installed_module(tmp_path):
    """Images install the package and ship langgraph.json alone: ./src/<pkg>/graph.py is then the
    installed module <pkg>.graph (here the weather agent, importable in the test environment)."""
    import sys

    sys.path.append(str(WEATHER / "src"))
    try:
        path = write(tmp_path, {"graphs": {"w": "./src/weather_agent/graph.py:graph"}})
        graphs = asyncio.run(load_graphs(load_config(path)))
    finally:
        sys.path.remove(str(WEATHER / "src"))
    assert graphs["w"].compiled.name == "weather"
