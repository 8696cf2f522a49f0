"""The runtime's declared ranges are honest at their low end. Every other test runs the highest
versions (the tested pins, constraints.txt); an adopted project's lock may hold anything the
runtime's pyproject admits. Here the runtime is installed with the lowest version of each of its
direct dependencies (`uv pip compile --resolution lowest-direct`: langgraph, langchain-core,
langgraph-checkpoint-postgres, fastapi and so starlette, psycopg, uvicorn ...) and serves the
SDK's common flow: runs with context and secrets, every stream mode the SDK's default flow uses,
an interrupt resumed, state and history, a second process resuming nothing twice."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from langgraph_sdk import get_client

from .helpers import RUNTIME, WEATHER, runtime_server

pytestmark = pytest.mark.slow
# What the lowest resolution must reach (the low ends the runtime's pyproject declares).
LOW_ENDS = {"langgraph": "0.6.2", "fastapi": "0.115", "langgraph-checkpoint-postgres": "2.0",
            "psycopg": "3.2", "langchain-core": "0.3"}


@pytest.fixture(scope="module")
def lowest(tmp_path_factory) -> tuple[str, dict[str, str]]:
    """A virtualenv with the runtime (not editable) and the weather agent at the lowest versions
    the runtime admits: (its python, {package: version})."""
    uv = Path(sys.executable).parent / "uv"
    if not uv.is_file():
        pytest.skip("uv is not installed (pip install uv)")
    venv = tmp_path_factory.mktemp("lowest")
    pins = venv / "lowest.txt"
    subprocess.run([str(uv), "pip", "compile", "--quiet", "--resolution", "lowest-direct",
                    "--python", sys.executable, str(RUNTIME / "pyproject.toml"), "-o", str(pins)],
                   check=True)
    subprocess.run([str(uv), "venv", "--quiet", "--python", sys.executable, str(venv / "env")],
                   check=True)
    python = str(venv / "env" / "bin" / "python")
    subprocess.run([str(uv), "pip", "install", "--quiet", "--python", python, "-r", str(pins),
                    "-c", str(pins), str(RUNTIME), str(WEATHER)], check=True)
    listed = subprocess.run([str(uv), "pip", "freeze", "--python", python], check=True,
                            capture_output=True, text=True).stdout
    versions = dict(line.split("==", 1) for line in listed.splitlines() if "==" in line)
    return python, versions


def test_the_lowest_versions_the_runtime_admits_serve_the_sdk_flow(lowest, database, tmp_path):
    python, versions = lowest
    for package, low in LOW_ENDS.items():  # the resolution did reach the low ends
        assert versions[package].startswith(low), (package, versions[package])
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "weather_api_key").write_text("k-low\n")
    with runtime_server(database, python=python, SECRETS_DIR=str(secrets),
                        AGENT_SECRETS='["WEATHER_API_KEY"]') as server:

        async def flow() -> None:
            client = get_client(url=server.base, api_key="key-one")
            thread = (await client.threads.create())["thread_id"]
            result = await client.runs.wait(thread, "weather", input={"question": "rain?"},
                                            context={"city": "Porto"})
            assert result["answers"] == ["weather-model-1 in Porto (celsius, key=k-low): rain?"]
            modes = set()
            async for part in client.runs.stream(thread, "weather", input={"question": "sun?"},
                                                 stream_mode=["values", "updates", "messages-tuple"]):
                modes.add(part.event.split("|")[0])
            assert {"metadata", "values", "updates"} <= modes, modes
            state = await client.threads.get_state(thread)
            assert state["values"]["answers"][-1].endswith("sun?")
            assert len(await client.threads.get_history(thread)) >= 2
            # an interrupt, then the resume
            paused = (await client.threads.create())["thread_id"]
            await client.runs.wait(paused, "approve", input={"text": "x"})
            assert (await client.threads.get(paused))["status"] == "interrupted"
            done = await client.runs.wait(paused, "approve", command={"resume": "yes"})
            assert done["log"] == ["in:x", "decision:yes"]

        asyncio.run(flow())
