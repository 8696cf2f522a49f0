"""pyproject.toml against the PEP 517/518/621 schemas (validate-pyproject)."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

from ._base import Context, Finding, finding

NAME = "validate-pyproject"


def matches(rel: PurePosixPath) -> bool:
    return rel.name == "pyproject.toml"


@cache
def _validator() -> Any:
    from validate_pyproject import api

    return api.Validator()


def check(path: Path, ctx: Context) -> list[Finding]:
    from validate_pyproject.errors import ValidationError

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError:
        return []  # reported by the syntax validator
    try:
        _validator()(data)
    except ValidationError as exc:
        return [finding(ctx, path, NAME, " ".join(str(exc.message).split()))]
    return []


def prepare() -> None:
    # The first call compiles the schemas; do it on a minimal document while the template renders.
    _validator()({"project": {"name": "warm-up", "version": "0"}})
