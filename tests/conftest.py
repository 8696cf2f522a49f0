from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentgen import generate, load_spec

from .servers import Postgres, postgres_cluster


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture
def render(tmp_path: Path):
    """Render answers into a fresh directory (no git) and return its path."""

    def _render(answers: dict[str, Any] | None = None, name: str = "demo", **kw: Any) -> Path:
        data = {"name": name, **(answers or {})}
        dest = tmp_path / f"out-{len(list(tmp_path.iterdir()))}"
        generate(load_spec(data), dest, git=False, **kw)
        return dest

    return _render


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root (including .git) with its bytes: to compare trees exactly."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With AGENTGEN_NO_SKIP=1 (CI, where every tool is installed) a skipped test is a failure."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("AGENTGEN_NO_SKIP") == "1":
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may skip: {report.longrepr}"
