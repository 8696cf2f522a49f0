"""Running git: one place for the environment (no prompts) and for turning failures into UserErrors."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .errors import GitError, UserError

# Variables that would point git (and copier's git, and checkov) somewhere else than the project
# agentgen works on: set inside a git hook (GIT_DIR, GIT_WORK_TREE, GIT_INDEX_FILE), or injected
# configuration (GIT_CONFIG_*), or checkov's platform mode (BC_API_KEY makes it demand --repo-id).
_FOREIGN_GIT = {"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE",
                "GIT_CEILING_DIRECTORIES", "GIT_DISCOVERY_ACROSS_FILESYSTEM", "GIT_CONFIG",
                "GIT_CONFIG_COUNT", "GIT_CONFIG_PARAMETERS", "GIT_PREFIX", "GIT_QUARANTINE_PATH"}


def _foreign(name: str) -> bool:
    return (name in _FOREIGN_GIT or name.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_", "BC_"))
            or name == "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2")


def tool_environment(**extra: str) -> dict[str, str]:
    """The environment agentgen's subprocesses (git, checkov, copier's git) run with: the caller's,
    without what would redirect them; plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not _foreign(k)}, **extra}


def scrub_environment() -> None:
    """Remove those variables from this process (copier runs git with os.environ)."""
    for name in [k for k in os.environ if _foreign(k)]:
        del os.environ[name]


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        error: type[UserError] = GitError) -> str:
    """Run `git args` and return its stdout; raise `error` with git's message when it fails."""
    if shutil.which("git") is None:
        raise error("git is not installed (apt-get install git)")
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False,
                          env=tool_environment(GIT_TERMINAL_PROMPT="0", **(env or {})))
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        raise error(f"git {args[0]} failed: {message}")
    return proc.stdout.decode(errors="surrogateescape")
