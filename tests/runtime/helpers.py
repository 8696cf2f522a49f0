"""Helpers for the runtime tests: server processes (`python -m agentgen_runtime`, the image's entry
point) on loopback ports, Redis, side virtualenvs for peers, and the test agents' paths."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..servers import free_port, http_status, port_open, process

AGENTS = Path(__file__).parent / "agents"
WEATHER = AGENTS / "weather"
RUNTIME = Path(__file__).parents[2] / "templates" / "project" / "runtime"
CONSTRAINTS = RUNTIME.parent / "constraints.txt"
KEYS = "key-one,key-two"
INSTALL_REDIS = "apt-get install -y redis-server"


@dataclass
class Server:
    base: str
    port: int
    proc: subprocess.Popen
    metrics_port: int = 0

    def metrics(self) -> str:
        """What the metrics port serves (Prometheus text)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",  # noqa: S310
                                    timeout=10) as response:
            return response.read().decode()

    def call(self, method: str, path: str, body: Any = None, key: str | None = "key-one",
             timeout: float = 30) -> tuple[int, Any, dict[str, str]]:
        """One request on a new connection: (status, JSON body, headers)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            return request(conn, method, path, body, key)
        finally:
            conn.close()


def request(conn: http.client.HTTPConnection, method: str, path: str, body: Any = None,
            key: str | None = "key-one") -> tuple[int, Any, dict[str, str]]:
    # a key, or a bearer token for custom auth ("Bearer ..."), as a client sends each
    credential = {"Authorization": key} if key and key.startswith("Bearer ") else {"X-API-Key": key}
    headers = {"content-type": "application/json", **(credential if key else {})}
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    response = conn.getresponse()
    raw = response.read()
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        data = raw.decode(errors="replace")
    return response.status, data, {k.lower(): v for k, v in response.getheaders()}


def runtime_env(database_url: str, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "HOST": "127.0.0.1", "WORKERS": "1", "API_KEYS": KEYS,
            "SECRETS_DIR": str(WEATHER / "no-secrets"), "LANGGRAPH_CONFIG": str(WEATHER / "langgraph.json"),
            "LOG_LEVEL": "WARNING", "DB_CONNECT_TIMEOUT": "2", "REDIS_ENABLED": "false",
            "METRICS_PORT": "0", **extra}


@contextlib.contextmanager
def runtime_server(database_url: str, *, python: str = sys.executable, cwd: Path = WEATHER,
                   **extra: str) -> Iterator[Server]:
    """`python -m agentgen_runtime` (the image's entry point) on a free loopback port."""
    port, metrics_port = free_port(), free_port()
    env = runtime_env(database_url, PORT=str(port), **{"METRICS_PORT": str(metrics_port), **extra})
    base = f"http://127.0.0.1:{port}"
    with process([python, "-m", "agentgen_runtime"], cwd=cwd, env=env, what="agentgen-runtime",
                 ready=lambda: http_status(f"{base}/health") == 200) as proc:
        yield Server(base, port, proc, metrics_port)


@contextlib.contextmanager
def redis_server() -> Iterator[tuple[str, subprocess.Popen]]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(f"redis-server is not installed ({INSTALL_REDIS})")
    port = free_port()
    with process([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                  "no"], what="redis", ready=lambda: port_open(port)) as proc:
        yield f"redis://127.0.0.1:{port}/0", proc


_VENVS: dict[str, str] = {}


JS_SDK = "@langchain/langgraph-sdk@1.15.0"  # the JavaScript client behind React's useStream


def js_sdk() -> Path:
    """A directory (cached in the temp dir) where `node` finds the JavaScript SDK from npm."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("node and npm are not installed (apt-get install -y nodejs npm)")
    home = Path(tempfile.gettempdir()) / f"agentgen-js-{hashlib.sha256(JS_SDK.encode()).hexdigest()[:12]}"
    with _exclusive(home):  # (test workers share it: one installs, the others wait)
        if not (home / "node_modules" / "@langchain" / "langgraph-sdk" / "package.json").is_file():
            home.mkdir(exist_ok=True)
            (home / "package.json").write_text('{"private": true, "type": "module"}\n')
            subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", JS_SDK], cwd=home,
                           check=True, timeout=600)
    return home


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Held by one process at a time (pytest-xdist workers building the same cached directory)."""
    import fcntl

    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def side_venv(*requirements: str) -> str:
    """The Python of a virtualenv (cached in the temp dir) with the runtime's pinned dependencies and
    `requirements`: for peers such as `langgraph dev` that must not share agentgen's environment."""
    uv = Path(sys.executable).parent / "uv"
    if not uv.is_file():
        pytest.skip("uv is not installed (pip install uv)")
    key = hashlib.sha256(json.dumps([sorted(requirements), CONSTRAINTS.read_text()]).encode()).hexdigest()
    if key not in _VENVS:
        venv = Path(tempfile.gettempdir()) / f"agentgen-side-venv-{key[:16]}"
        with _exclusive(venv):
            if not (venv / "bin" / "python").is_file():
                subprocess.run([str(uv), "venv", "--quiet", "--python", sys.executable, str(venv)],
                               check=True)
            subprocess.run([str(uv), "pip", "install", "--quiet", "--python",
                            str(venv / "bin" / "python"), "-c", str(CONSTRAINTS), *requirements],
                           check=True)
        _VENVS[key] = str(venv / "bin" / "python")
    return _VENVS[key]


@contextlib.contextmanager
def langgraph_dev(cwd: Path, config: Path, *, install: Path | None = None,
                  **env: str) -> Iterator[str]:
    """`langgraph dev`, the reference server (from a side venv, with `install`'s package in it
    when given), serving `config` from `cwd` on a free loopback port: its URL."""
    python = side_venv("langgraph-cli[inmem]", *(("-e", str(install)) if install else ()))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with process([str(Path(python).parent / "langgraph"), "dev", "--no-browser", "--no-reload",
                  "--port", str(port), "--host", "127.0.0.1", "--config", str(config)], cwd=cwd,
                 env={"LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false", **env},
                 what="langgraph dev", ready=lambda: http_status(f"{url}/ok") == 200, timeout=180):
        yield url

