"""Running git: one place for the environment (no prompts) and for turning failures into UserErrors."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .errors import GitError, UserError


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        error: type[UserError] = GitError) -> str:
    """Run `git args` and return its stdout; raise `error` with git's message when it fails."""
    if shutil.which("git") is None:
        raise error("git is not installed (apt-get install git)")
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False,
                          env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})})
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        raise error(f"git {args[0]} failed: {message}")
    return proc.stdout.decode(errors="surrogateescape")
