"""Property: every schema-valid answer set renders a project that passes every validator (checkov
aside, it is slow), or is refused by a documented cross-field rule. Answer sets are drawn by
hypothesis from the schema's own limits: unicode free text, names at their boundary lengths, every
scale, backend, target and preset override.

`AGENTGEN_PROPERTY_EXAMPLES` sets how many (default 300, about 6 minutes on 2 cores: Kubernetes
targets cost 2-5 s each to validate, sets refused by a rule almost nothing); another 25 with
Kubernetes targets also go through checkov."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agentgen import load_spec
from agentgen.errors import SpecError
from agentgen.render import render
from agentgen.spec import (
    DESCRIPTION_PATTERN,
    NAMESPACE_MAX,
    YAML_NON_STRING,
    LLMProvider,
    Scale,
    SecretsBackend,
    Target,
)
from agentgen.validate import validate_tree

from .servers import venv_tool

EXAMPLES = int(os.environ.get("AGENTGEN_PROPERTY_EXAMPLES", "300"))
CHECKOV_EXAMPLES = 25
CROSS_FIELD = ("needs target kubernetes or helm", "cannot feed a kubernetes/helm target",
               "is greater than hpa_max_replicas", "must be lower than the minimum replica count",
               "is above")


def _label(max_size: int) -> st.SearchStrategy[str]:
    """DNS-1123 labels up to max_size, biased to the boundaries, that YAML reads as strings."""
    middle = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=0, max_size=max_size - 2)
    label = st.builds(lambda first, mid, last: (first + mid + last)[:max_size],
                      st.sampled_from("abcdefghijklmnopqrstuvwxyz"), middle,
                      st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789"))
    full = st.just("a" * (max_size - 1) + "z")
    return st.one_of(full, label, st.just("a")).filter(
        lambda v: re.fullmatch(YAML_NON_STRING, v) is None)


_free_text = st.text(st.characters(codec="utf-8"), max_size=500).filter(
    lambda v: re.fullmatch(DESCRIPTION_PATTERN, v) is not None)

answers = st.fixed_dictionaries(
    {"name": _label(40)},
    optional={
        "description": st.one_of(_free_text, st.just("x" * 500), st.just("😀 ${{ a }} {{ b }} \\")),
        "scale": st.sampled_from([s.value for s in Scale]),
        "targets": st.lists(st.sampled_from([t.value for t in Target]), min_size=1, max_size=4,
                            unique=True),
        "secrets": st.sampled_from([s.value for s in SecretsBackend]),
        "llm_provider": st.sampled_from([p.value for p in LLMProvider]),
        "python_version": st.sampled_from(["3.11", "3.12", "3.13"]),
        "namespace": _label(NAMESPACE_MAX),
        "checkpoint_retention_days": st.integers(1, 3650),
        "overrides": st.fixed_dictionaries({}, optional={
            "replicas": st.integers(1, 100), "uvicorn_workers": st.integers(1, 64),
            "db_pool_size": st.integers(1, 500), "redis": st.booleans(), "nginx": st.booleans(),
            "monitoring": st.booleans(), "hpa_enabled": st.booleans(), "pdb_enabled": st.booleans()}),
    },
)


def _renders_valid(data: dict, exclude: set[str]) -> None:
    venv_tool("helm", "scripts/install-validators.sh")
    try:
        spec = load_spec(data)
    except SpecError as exc:  # only a documented cross-field rule may refuse a schema-valid set
        assert all(any(rule in line for rule in CROSS_FIELD) for line in exc.lines()), exc.lines()
        return
    out = Path(tempfile.mkdtemp(prefix="agentgen-prop-")) / "p"
    try:
        render(spec, out)
        report = validate_tree(out, exclude=exclude)
        assert report.errors == [], [str(f) for f in report.errors][:5]
        assert report.skipped == []
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


EVERYWHERE = ["compose", "kubernetes", "helm", "langgraph-platform"]


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(answers)
# Valid answers that once failed agentgen's own validators (non-BMP text became surrogate escapes in
# TOML and Chart.yaml; a trailing backslash broke the Dockerfile label; `${{ }}` and `{{ }}` together
# were taken for leftovers), on every target.
@example({"name": "emoji", "description": "Support bot 😀 𝔘 ✓", "targets": EVERYWHERE, "secrets": "vault"})
@example({"name": "slashes", "description": "C:\\path\\ and a trailing \\", "targets": EVERYWHERE,
          "secrets": "vault"})
@example({"name": "actions", "description": "${{ secrets.X }} next to {{ y }} and {% z %}",
          "targets": EVERYWHERE, "secrets": "aws-secrets-manager"})
@example({"name": "a" * 40, "namespace": "n" * NAMESPACE_MAX, "targets": ["kubernetes"],
          "secrets": "sealed-secrets", "scale": "large"})
def test_every_valid_answer_set_renders_a_valid_project(data):
    _renders_valid(data, exclude={"checkov"})


kubernetes_answers = answers.map(lambda d: {**d, "targets": sorted({*d.get("targets", []), "helm"}),
                                            "secrets": d.get("secrets", "kubernetes")})


@pytest.mark.slow
@settings(max_examples=CHECKOV_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(kubernetes_answers)
def test_valid_kubernetes_answer_sets_pass_checkov_too(data):
    _renders_valid(data, exclude=set())
