"""A generated project as its user runs it: `make install/lint/test`, then the image's entry point
serving its graphs on a throwaway PostgreSQL; and the same graphs under `langgraph dev`. (The runtime
itself is tested directly in tests/runtime/.)"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .servers import (
    free_port,
    http_status,
    process,
    project_python,
)

pytestmark = pytest.mark.slow


def service_env(project: Path, **extra: str) -> dict[str, str]:
    return {"SECRETS_DIR": str(project / "no-secrets"), "LLM_PROVIDER": "fake", "WORKERS": "1",
            "LOG_LEVEL": "WARNING", **extra}


def test_make_install_then_the_entrypoint_serves_the_project(render, postgres):
    """As a user would: `make install` (a .venv with the project, the runtime and the dev tools,
    pinned), `make lint`, `make test`, then the image's ENTRYPOINT (`agentgen-runtime`) serves both
    graphs to the langgraph-sdk client, with the API key the compose stack would get."""
    from langgraph_sdk import get_client

    if shutil.which("make") is None:
        pytest.skip("make is not installed (apt-get install make)")
    project = render({"scale": "dev"})
    env = {**os.environ, "PYTHON": sys.executable, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    for target in ("install", "lint", "test"):
        done = subprocess.run(["make", target], cwd=project, capture_output=True, text=True, env=env,
                              timeout=900)
        assert done.returncode == 0, (target, done.stdout[-3000:], done.stderr[-3000:])
    secrets = project / "secrets"
    secrets.mkdir()
    (secrets / "api_keys").write_text("k-user")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_env = service_env(project, DATABASE_URL=postgres.create_database("make_serve"), PORT=str(port),
                             SECRETS_DIR=str(secrets), AUTH_REQUIRED="true")
    entrypoint = str(project / ".venv" / "bin" / "agentgen-runtime")
    with process([entrypoint], cwd=project, env=server_env, what="make serve",
                 ready=lambda: http_status(f"{base}/ready") == 200):

        async def scenario() -> None:
            client = get_client(url=base, api_key="k-user")
            assert {a["graph_id"] for a in await client.assistants.search()} == {"agent", "approval"}
            thread = (await client.threads.create())["thread_id"]
            result = await client.runs.wait(thread, "agent", input={"messages": [
                {"role": "user", "content": "hi"}]})
            assert result["messages"][-1]["content"] == "Echo: hi"
            paused = await client.runs.wait((await client.threads.create())["thread_id"], "approval",
                                            input={"messages": [{"role": "user", "content": "hi"}]})
            assert paused["__interrupt__"][0]["value"]["draft"] == "Echo: hi"

        asyncio.run(scenario())
        assert http_status(f"{base}/assistants/agent") == 401  # no key


def test_langgraph_dev_serves_the_generated_graph(render):
    from langgraph_sdk import get_client

    project = render({"targets": ["compose", "langgraph-platform"]})
    python = project_python(project, "langgraph-cli[inmem]")
    langgraph = str(Path(python).parent / "langgraph")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**service_env(project), "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false"}
    with process([langgraph, "dev", "--no-browser", "--no-reload", "--port", str(port),
                  "--host", "127.0.0.1"], cwd=project, env=env, what="langgraph dev",
                 ready=lambda: http_status(f"{url}/ok") == 200, timeout=120):

        async def run() -> dict:
            client = get_client(url=url)
            thread = await client.threads.create()
            return await client.runs.wait(thread["thread_id"], "agent",
                                          input={"messages": [{"role": "user", "content": "hi"}]})

        result = asyncio.run(run())
    assert result["messages"][-1]["content"] == "Echo: hi"
