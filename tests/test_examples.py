"""examples/NAME.yml and their committed renderings examples/NAME/ (what users browse on the web)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentgen.lifecycle import check
from agentgen.render import render
from agentgen.spec import Target, load_spec, read_answers_file

from .conftest import snapshot

pytestmark = pytest.mark.renders

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CONFIGS = sorted(EXAMPLES.glob("*.yml"))
REGENERATE = "stale: run ./scripts/regenerate-examples.sh and commit examples/"


def test_examples_cover_every_target_and_four_secrets_backends():
    specs = [load_spec(read_answers_file(config)) for config in CONFIGS]
    assert {t for spec in specs for t in spec.targets} == set(Target)
    assert len({spec.secrets for spec in specs}) >= 4
    assert all(config.with_suffix("").is_dir() for config in CONFIGS)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.stem)
def test_committed_rendering_is_current(config, tmp_path):
    fresh = tmp_path / "fresh"
    render(load_spec(read_answers_file(config)), fresh)
    committed, expected = snapshot(config.with_suffix("")), snapshot(fresh)
    assert sorted(set(committed) ^ set(expected)) == [], REGENERATE
    assert [path for path in expected if committed[path] != expected[path]] == [], REGENERATE
    assert check(config.with_suffix("")).status == "clean"
