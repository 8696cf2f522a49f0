"""Tests run offline: the deterministic `fake` chat model, settings re-read for every test, and a
real PostgreSQL: $DATABASE_URL when set, else a throwaway cluster started with the server binaries
(Debian: apt-get install postgresql); API tests skip, naming that command, when neither exists."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from research_agent import graph, settings

INSTALL = "apt-get install postgresql, or set DATABASE_URL"


@pytest.fixture(autouse=True)
def offline_model(monkeypatch):
    monkeypatch.setenv("LLM_PROVIDER", "fake")
    settings.get_settings.cache_clear()
    graph.chat_model.cache_clear()
    yield
    settings.get_settings.cache_clear()
    graph.chat_model.cache_clear()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str | None]:
    """$REDIS_URL, else a throwaway redis-server when installed, else None (the API then limits
    rates in-process)."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = shutil.which("redis-server")
    if server is None:
        yield None
        return
    port = _free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait()


def _pg_bin(name: str) -> str | None:
    for directory in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (directory / name).is_file():
            return str(directory / name)
    return shutil.which(name)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip(f"no PostgreSQL for the API tests ({INSTALL})")
    base = Path(tempfile.mkdtemp(prefix="pgtest-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb and pg_ctl refuse to run as root
        pwd.getpwnam("postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres", "postgres")
    port = _free_port()
    data = base / "data"
    subprocess.run([*run_as, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, capture_output=True)
    ctl = [*run_as, pg_ctl, "-D", str(data), "-w"]
    subprocess.run([*ctl, "-l", str(data / "log"), "-o",
                    f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off",
                    "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*ctl, "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
