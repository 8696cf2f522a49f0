"""Property: every schema-valid answer set renders a project that passes every validator (checkov
aside, it is slow), or is refused by a documented cross-field rule. Answer sets are drawn by
hypothesis from the schema's own limits: unicode free text, names at their boundary lengths, every
scale, backend, target and preset override.

`AGENTGEN_PROPERTY_EXAMPLES` sets how many (default 500), drawn in one shard per scale so that
`scripts/test.sh` runs them on every core (pytest-xdist): a set with Kubernetes targets costs about
2 s to render and validate, one refused by a rule almost nothing. Another 25 with Kubernetes
targets also go through checkov (about 10 s each); the answer sets that once failed are re-created
as literal examples."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
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
from agentgen.validate import Context, checkov, iter_files, validate_tree

from .servers import venv_tool

EXAMPLES = int(os.environ.get("AGENTGEN_PROPERTY_EXAMPLES", "500"))
SHARDS = [s.value for s in Scale]
CHECKOV_EXAMPLES = 25
CROSS_FIELD = ("needs target kubernetes or helm", "cannot feed a kubernetes/helm target",
               "is greater than hpa_max_replicas", "must be lower than the minimum replica count",
               "is above", "ends in a line break")


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


@pytest.fixture(autouse=True, scope="module")
def _compiled_templates_kept():
    """copier compiles every template (and every path part) afresh for each render, 40% of a
    render's time; these tests render 500 times, so a compiled template is kept for the same source
    and environment settings (compilation is a pure function of both: the output is unchanged)."""
    import jinja2

    compile_ = jinja2.Environment.compile
    kept: dict[tuple, object] = {}

    def compile_kept(self, source, name=None, filename=None, raw=False, defer_init=False):
        key = (type(self), tuple(sorted(self.extensions)), self.block_start_string,
               self.block_end_string, self.variable_start_string, self.variable_end_string,
               self.comment_start_string, self.comment_end_string, self.line_statement_prefix,
               self.line_comment_prefix, self.trim_blocks, self.lstrip_blocks, self.newline_sequence,
               self.keep_trailing_newline, self.autoescape, self.optimized, self.is_async,
               source, name, filename, raw, defer_init)
        if key not in kept:
            kept[key] = compile_(self, source, name, filename, raw, defer_init)
        return kept[key]

    jinja2.Environment.compile = compile_kept
    try:
        yield
    finally:
        jinja2.Environment.compile = compile_


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
KUBERNETES = ["kubernetes", "helm"]
# Valid answers that once failed agentgen's own validators on agentgen's own output: number-like
# namespaces written unquoted into kustomization.yaml; non-BMP text written as surrogate escapes
# that TOML and Chart.yaml reject; backslashes breaking the Dockerfile LABEL; `${{ }}` next to
# `{{ }}` taken for unrendered Jinja; names at their boundary lengths.
ONCE_FAILING = [
    *({"name": "numbers", "namespace": ns, "targets": KUBERNETES, "secrets": backend}
      for ns in ("0", "79", "1e5", "0x1f", "007", "true", "null", "1", "12e3", "0o17", "0b101", "off")
      for backend in ("kubernetes", "vault")),
    *({"name": "emoji", "description": text, "targets": EVERYWHERE, "secrets": "vault"}
      for text in ("Support bot 😀", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ✓", "🦜🔗 agents", "汉字 and 🀄",
                   "\U0001F600 \\u00e9 literally", "ends with an emoji 🚀",
                   "👩‍💻 ZWJ sequence", "flags 🇫🇷🇯🇵")),
    *({"name": "slashes", "description": text, "targets": EVERYWHERE, "secrets": "aws-secrets-manager"}
      for text in ("C:\\path\\ and a trailing \\", "\\", "a \\\n b", "line\\\nnext")),
    {"name": "actions", "description": "${{ secrets.X }} next to {{ y }} and {% z %}",
     "targets": EVERYWHERE, "secrets": "vault"},
    {"name": "a" * 40, "namespace": "n" * NAMESPACE_MAX, "targets": KUBERNETES,
     "secrets": "sealed-secrets", "scale": "large"},
]


@pytest.mark.properties
@pytest.mark.parametrize("data", ONCE_FAILING)
def test_answer_sets_that_once_failed_render_a_valid_project(data):
    _renders_valid(data, exclude={"checkov"})


@pytest.mark.properties
@pytest.mark.parametrize("scale", SHARDS)
@settings(max_examples=-(-EXAMPLES // len(SHARDS)), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=answers)
def test_every_valid_answer_set_renders_a_valid_project(scale, data):
    _renders_valid({**data, "scale": scale}, exclude={"checkov"})


kubernetes_answers = st.tuples(answers, st.sampled_from(SHARDS)).map(
    lambda pair: {**pair[0], "scale": pair[1], "targets": sorted({*pair[0].get("targets", []), "helm"}),
                  "secrets": pair[0].get("secrets", "kubernetes")})


@pytest.mark.properties
@settings(max_examples=1, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.data_too_large])
@given(batch=st.lists(kubernetes_answers, min_size=CHECKOV_EXAMPLES, max_size=CHECKOV_EXAMPLES))
def test_valid_kubernetes_answer_sets_pass_checkov_too(batch):
    """25 drawn sets, each rendered, then scanned by one checkov run (its start-up is most of its
    cost); a failing batch shrinks like any list."""
    venv_tool("checkov", "scripts/install-validators.sh")
    base = Path(tempfile.mkdtemp(prefix="agentgen-prop-"))
    try:
        trees = []
        for index, data in enumerate(batch):
            try:
                spec = load_spec(data)
            except SpecError as exc:
                assert all(any(rule in line for rule in CROSS_FIELD) for line in exc.lines())
                continue
            render(spec, base / str(index))
            trees.append((Context(base / str(index)), list(iter_files(base / str(index)))))
        for (ctx, _), (findings, resources) in zip(trees, checkov.scan(trees), strict=True):
            assert findings == [], (ctx.root, [str(f) for f in findings][:5])
            assert resources > 0
            ctx.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
