"""Where the packaged copier template lives (inside the wheel, or `templates/` in a source checkout)."""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def template_dir() -> Path:
    packaged = Path(__file__).parent / "templates"
    if (packaged / "copier.yml").is_file():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "templates"
    if (checkout / "copier.yml").is_file():
        return checkout
    raise FileNotFoundError("agentgen's template is missing: reinstall agentgen")
