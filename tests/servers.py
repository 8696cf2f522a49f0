"""Real servers for tests, started by the tests themselves: a throwaway PostgreSQL cluster, OpenBao,
moto, and the generated service. Each is bound to 127.0.0.1 on a free port and always stopped."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
INSTALL_POSTGRES = "apt-get install -y postgresql"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = output(proc)
            raise RuntimeError(f"{what}: process exited with {proc.returncode}\n{out}")
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not ready after {timeout} s")


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _pg_tool(name: str) -> str | None:
    for directory in PG_BIN_DIRS:
        if (directory / name).is_file():
            return str(directory / name)
    return shutil.which(name)


@dataclass
class Postgres:
    """A PostgreSQL cluster in a temporary directory; root runs it as the `postgres` user."""

    data_dir: Path
    port: int
    run_as: list[str]
    pg_ctl: str

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run([*self.run_as, self.pg_ctl, "-D", str(self.data_dir), *args],
                       check=True, capture_output=True, text=True)

    def start(self) -> None:
        self._ctl("-w", "-t", "30", "-l", str(self.data_dir / "server.log"), "-o",
                  f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
                  " -c fsync=off -c max_connections=200", "start")

    def stop(self) -> None:
        self._ctl("-w", "-m", "fast", "stop")

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


@contextlib.contextmanager
def postgres_cluster(bin_dir: Path | None = None) -> Iterator[Postgres]:
    """A throwaway cluster: Debian's binaries, or those in `bin_dir` (pgvector's PostgreSQL)."""
    if bin_dir is not None:
        initdb, pg_ctl = str(bin_dir / "initdb"), str(bin_dir / "pg_ctl")
    else:
        initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip(f"PostgreSQL server binaries not found ({INSTALL_POSTGRES})")
    base = Path(tempfile.mkdtemp(prefix="agentgen-pg-"))
    data = base / "data"
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb and pg_ctl refuse to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip(f"running as root without a postgres user ({INSTALL_POSTGRES})")
        run_as = ["runuser", "-u", "postgres", "--"]
        os.chmod(base, 0o755)
        shutil.chown(base, "postgres", "postgres")
    subprocess.run([*run_as, initdb, "-D", str(data), "-A", "trust", "-U", "postgres",
                    "--no-sync"], check=True, capture_output=True)
    cluster = Postgres(data, free_port(), run_as, pg_ctl)
    cluster.start()
    try:
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def process(cmd: list[str], *, ready: Callable[[], bool], what: str, cwd: Path | None = None,
            env: dict[str, str] | None = None, timeout: float = 60) -> Iterator[subprocess.Popen]:
    """Start a process in its own group, wait for `ready`, and always kill the group. Its output goes
    to a file (`output(proc)` reads it): a pipe nobody reads fills up and blocks a chatty server."""
    log = tempfile.NamedTemporaryFile(prefix="agentgen-proc-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=log,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    _LOGS[proc.pid] = Path(log.name)
    log.close()
    try:
        wait_until(ready, timeout, what, proc)
        yield proc
    finally:
        stop_process(proc)
        Path(log.name).unlink(missing_ok=True)


_LOGS: dict[int, Path] = {}


def output(proc: subprocess.Popen) -> str:
    """What a process started by `process` printed so far."""
    path = _LOGS.get(proc.pid)
    if path is not None and path.is_file():
        return path.read_text(errors="replace")
    return proc.stdout.read() if proc.stdout and not proc.stdout.closed else ""


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


def venv_tool(name: str, install: str) -> str:
    """A console script of this environment, or skip naming the install command."""
    path = Path(sys.executable).parent / name
    found = str(path) if path.is_file() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed ({install})")
    return found


_VENVS: dict[str, Path] = {}
RUNTIME_EXTRAS = "redis,vault,aws"


def project_python(project: Path, *extra: str) -> str:
    """The Python of a fresh virtualenv with the generated project installed as its Makefile does
    (`pip install -c constraints.txt -e './runtime[...]' -e '.[dev]'`, done with uv; every runtime
    extra), plus `extra` requirements. Virtualenvs are shared by projects with the same dependencies."""
    import hashlib
    import tomllib

    uv = Path(sys.executable).parent / "uv"
    if not uv.is_file():
        pytest.skip("uv is not installed (pip install uv)")
    project_meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    key = hashlib.sha256(json.dumps(
        [project_meta["name"], project_meta["dependencies"], sorted(extra),
         (project / "constraints.txt").read_text(),
         (project / "runtime" / "pyproject.toml").read_text()]).encode()).hexdigest()[:16]
    if key not in _VENVS:
        # one per test worker: a shared one's editable install would be pointed at another
        # worker's checkout while a test of this one runs
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        venv = Path(tempfile.gettempdir()) / f"agentgen-test-venv-{key}-{worker}"
        if not (venv / "bin" / "python").is_file():
            subprocess.run([str(uv), "venv", "--quiet", "--python", sys.executable, str(venv)],
                           check=True)
        subprocess.run([str(uv), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
                        "-c", str(project / "constraints.txt"), "-e", f"{project}[dev]",
                        "-e", f"{project}/runtime[{RUNTIME_EXTRAS}]", *extra], check=True)
        _VENVS[key] = venv
    else:  # same dependencies, another checkout: point the editable install at this one
        subprocess.run([str(uv), "pip", "install", "--quiet", "--no-deps", "--python",
                        str(_VENVS[key] / "bin" / "python"), "-e", str(project),
                        "-e", f"{project}/runtime"], check=True)
    return str(_VENVS[key] / "bin" / "python")
