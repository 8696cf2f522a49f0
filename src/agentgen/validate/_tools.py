"""Locating external tools: on PATH, or next to the running interpreter (a venv's bin/)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def which(tool: str) -> str | None:
    found = shutil.which(tool)
    if found:
        return found
    beside = Path(sys.executable).parent / tool
    return str(beside) if beside.is_file() else None
