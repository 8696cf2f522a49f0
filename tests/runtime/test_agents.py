"""A third-party agent under agentgen-runtime, configured by its langgraph.json as LangGraph Platform
reads it: context defaults, keys from the secrets directory in os.environ, `env`, `http.app`,
graph factories; and the same run under `langgraph dev` gives the same answer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from langgraph_sdk import get_client

from ..servers import free_port
from .helpers import WEATHER, langgraph_dev, runtime_server

pytestmark = pytest.mark.slow
QUESTION = {"question": "rain tomorrow?"}


def secrets(tmp_path: Path, **values: str) -> str:
    directory = tmp_path / "secrets"
    directory.mkdir(exist_ok=True)
    for name, value in values.items():
        (directory / name).write_text(value + "\n")
    return str(directory)


async def ask(base: str, assistant: str, api_key: str | None = "key-one", **kwargs) -> dict:
    client = get_client(url=base, api_key=api_key)
    thread = await client.threads.create()
    return await client.runs.wait(thread["thread_id"], assistant, input=QUESTION, **kwargs)


def test_context_defaults_secrets_and_env_reach_the_agent(database, tmp_path):
    directory = secrets(tmp_path, weather_api_key="k-from-secrets-dir")
    with runtime_server(database, SECRETS_DIR=directory, AGENT_SECRETS='["WEATHER_API_KEY"]') as server:
        # no context: the schema's defaults, as `langgraph dev` does; WEATHER_UNITS from langgraph.json
        result = asyncio.run(ask(server.base, "weather"))
        assert result["answers"] == [
            "weather-model-1 in Lisbon (celsius, key=k-from-secrets-dir): rain tomorrow?"]
        porto = asyncio.run(ask(server.base, "weather", context={"city": "Porto"}))
        assert porto["answers"] == [
            "weather-model-1 in Porto (celsius, key=k-from-secrets-dir): rain tomorrow?"]
        # a factory taking the config is called for each run with that run's config
        spicy = asyncio.run(ask(server.base, "per_run", config={"configurable": {"flavour": "spicy"}}))
        assert spicy["answers"] == ["spicy: rain tomorrow?"]
        plain = asyncio.run(ask(server.base, "per_run"))
        assert plain["answers"] == ["plain: rain tomorrow?"]
        # langgraph.json http.app is served beside the API, after `env` was applied, and its own
        # lifespan ran (once) at the server's start-up
        assert server.call("GET", "/custom/hello", key=None)[1] == {"hello": "from langgraph.json",
                                                                    "lifespan": ["started"]}
        schemas = server.call("GET", "/assistants/weather/schemas")[1]
        assert set(schemas["context_schema"]["properties"]) == {"model", "city"}


def test_the_same_run_under_langgraph_dev_gives_the_same_answer(database, tmp_path):
    directory = secrets(tmp_path, weather_api_key="same-key")
    with runtime_server(database, SECRETS_DIR=directory, AGENT_SECRETS='["WEATHER_API_KEY"]') as server:
        ours = asyncio.run(ask(server.base, "weather"))
        ours_porto = asyncio.run(ask(server.base, "weather", context={"city": "Porto"}))

    # installed as its `dependencies` say; langgraph dev has no secrets directory: the key comes
    # from its environment
    with langgraph_dev(WEATHER, WEATHER / "langgraph.json", install=WEATHER,
                       WEATHER_API_KEY="same-key") as url:
        theirs = asyncio.run(ask(url, "weather", api_key=None))
        theirs_porto = asyncio.run(ask(url, "weather", api_key=None, context={"city": "Porto"}))
    assert ours["answers"] == theirs["answers"], (ours, theirs)
    assert ours_porto["answers"] == theirs_porto["answers"]
    assert ours["answers"][0].startswith("weather-model-1 in Lisbon (celsius, key=same-key)")


def test_a_node_error_is_a_json_answer_and_the_connection_stays_usable(database):
    import http.client

    from .helpers import request

    with runtime_server(database) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            # As on LangGraph Platform, `wait` answers as soon as the run exists (so that a client
            # can rejoin it) and a failed run is the body's `__error__` (the SDK raises it).
            status, body, headers = request(conn, "POST", "/runs/wait",
                                            {"assistant_id": "fails", "input": QUESTION})
            assert status == 200 and body["__error__"]["error"] == "RunError", body
            assert "node failed on 'rain tomorrow?'" in body["__error__"]["message"]
            assert headers["content-location"].startswith("/runs/")
            assert headers.get("connection", "").lower() != "close"
            sock = conn.sock
            status, body, _ = request(conn, "POST", "/runs/wait",
                                      {"assistant_id": "weather", "input": QUESTION})
            assert status == 200 and body["answers"], body
            assert conn.sock is sock  # the same keep-alive connection answered
            # every error has the same shape: 401, 404, 422 (an unsupported field named)
            for method, path, payload, key, code in [
                ("GET", "/threads/nope", None, "key-one", 404),
                ("POST", "/threads", {}, "wrong", 401),
                ("POST", "/runs/wait", {"assistant_id": "weather", "input": QUESTION,
                                        "webhook": "https://example.invalid/hook"}, "key-one", 422),
            ]:
                status, body, _ = request(conn, method, path, payload, key)
                assert status == code and set(body) == {"error", "message", "request_id"}, body
            assert "webhook" in body["message"]
        finally:
            conn.close()


def test_without_api_keys_the_server_refuses_to_start_unless_opened(database):
    import subprocess
    import sys

    from .helpers import runtime_env

    env = {**runtime_env(database, PORT=str(free_port())), "API_KEYS": ""}
    import os

    refused = subprocess.run([sys.executable, "-m", "agentgen_runtime"], cwd=WEATHER,
                             env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]
    assert "no API keys" in refused.stderr and "AUTH_REQUIRED=false" in refused.stderr
    with runtime_server(database, API_KEYS="", AUTH_REQUIRED="false") as server:
        status, body, _ = server.call("POST", "/threads", {}, key=None)
        assert status == 200 and body["thread_id"]


def test_secrets_dir_from_dotenv_and_graphs_loaded_by_module(database, tmp_path):
    """SECRETS_DIR set in .env is honoured; a graph given as `module:attr` (installed package)."""
    project = tmp_path / "project"
    project.mkdir()
    directory = secrets(tmp_path, weather_api_key="from-dotenv-dir", api_keys="dotenv-key")
    (project / ".env").write_text(f"SECRETS_DIR={directory}\nAGENT_SECRETS=[\"WEATHER_API_KEY\"]\n")
    config = {"dependencies": [str(WEATHER)], "graphs": {"w": "weather_agent.graph:graph"},
              "env": {"WEATHER_UNITS": "kelvin"}}
    (project / "langgraph.json").write_text(json.dumps(config))
    with runtime_server(database, cwd=project, LANGGRAPH_CONFIG=str(project / "langgraph.json"),
                        SECRETS_DIR="", API_KEYS="") as server:
        result = asyncio.run(ask(server.base, "w", api_key="dotenv-key"))
    assert result["answers"] == ["weather-model-1 in Lisbon (kelvin, key=from-dotenv-dir): rain tomorrow?"]
