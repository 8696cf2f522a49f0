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
    PYTHON_KEYWORDS,
    RESERVED_PACKAGES,
    RUNTIME_SECRETS,
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
               "is above", "ends in a line break",
               "is what `agentgen init` records")  # (new/render only: init renders mode init)


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


def _integer(low: int, high: int) -> st.SearchStrategy[int | float]:
    """An integer, or the same value as an integral float (JSON Schema counts 3.0 as an integer)."""
    return st.integers(low, high).flatmap(lambda n: st.sampled_from([n, n, n, float(n)]))


_cpu = st.one_of(st.integers(1, 8000).map(lambda m: f"{m}m"),
                 st.sampled_from(["0.1", "0.25", "0.5", "0.7", "1", "1.5", "2", "4"]))
_memory = st.one_of(st.integers(32, 16384).map(lambda n: f"{n}Mi"),
                    st.integers(1, 16).map(lambda n: f"{n}Gi"),
                    st.integers(64, 8000).map(lambda n: f"{n}M"),
                    st.integers(2**26, 2**34).map(str))
_python_identifier = st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True).filter(
    lambda v: v not in PYTHON_KEYWORDS and v not in RESERVED_PACKAGES
    and re.fullmatch(YAML_NON_STRING, v) is None)
_dns = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)

# Every field of the answers schema (a test checks that none is left undrawn); `scale` is the
# shard. `mode` init is what `agentgen init` renders (rendered here like new).
FIELDS: dict[str, st.SearchStrategy] = {
    "package": _python_identifier,
    "description": st.one_of(_free_text, st.just("x" * 500), st.just("😀 ${{ a }} {{ b }} \\")),
    "python_version": st.sampled_from(["3.11", "3.12", "3.13"]),
    "targets": st.lists(st.sampled_from([t.value for t in Target]), min_size=1, max_size=4,
                        unique=True),
    "secrets": st.sampled_from([s.value for s in SecretsBackend]),
    "llm_provider": st.sampled_from([p.value for p in LLMProvider]),
    "llm_model": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,40}", fullmatch=True),
    # known providers' keys (one may repeat llm_provider's), and any other name
    "agent_secrets": st.lists(st.one_of(
        st.sampled_from(["openai_api_key", "anthropic_api_key", "tavily_api_key", "x", "a" * 63]),
        st.from_regex(r"[a-z][a-z0-9_]{0,62}", fullmatch=True).filter(
            lambda v: v not in RUNTIME_SECRETS and re.fullmatch(YAML_NON_STRING, v) is None)),
        max_size=4, unique=True),
    "image_registry": st.one_of(
        st.sampled_from(["ghcr.io/example", "registry.example.com:5000/team", "localhost:5000"]),
        st.builds(lambda host, port, path: host + port + path, _dns,
                  st.sampled_from(["", ":5000", ":443"]),
                  st.sampled_from(["", "/team", "/a/b-c", "/x_y.z"]))),
    "image_repository": st.from_regex(r"[a-z0-9]+([._/-][a-z0-9]+){0,3}", fullmatch=True),
    "image_digest": st.one_of(st.just(""), st.from_regex(r"sha256:[a-f0-9]{64}", fullmatch=True)),
    "namespace": _label(NAMESPACE_MAX),
    "ingress_host": st.builds(lambda labels, tld: ".".join([*labels, tld]),
                              st.lists(_dns, min_size=1, max_size=3),
                              st.from_regex(r"[a-z]{2,8}", fullmatch=True)),
    "checkpoint_retention_days": _integer(1, 3650),
    "mode": st.sampled_from(["new", "new", "new", "init"]),
    "own_dockerignore": st.booleans(),
    "semantic_search": st.booleans(),
    "custom_auth": st.booleans(),
}
OVERRIDE_FIELDS: dict[str, st.SearchStrategy] = {
    "replicas": _integer(1, 100), "hpa_enabled": st.booleans(), "hpa_min_replicas": _integer(1, 20),
    "hpa_max_replicas": _integer(1, 100), "hpa_cpu_percent": _integer(10, 100),
    "hpa_memory_percent": _integer(10, 100), "pdb_enabled": st.booleans(),
    "pdb_min_available": _integer(0, 5), "cpu_request": _cpu, "cpu_limit": _cpu,
    "memory_request": _memory, "memory_limit": _memory, "uvicorn_workers": _integer(1, 64),
    "db_pool_size": _integer(1, 500), "db_pool_overflow": _integer(0, 500), "redis": st.booleans(),
    "nginx": st.booleans(), "topology_spread": st.booleans(), "monitoring": st.booleans(),
}
answers = st.fixed_dictionaries(
    {"name": _label(40)},
    optional={**FIELDS, "overrides": st.fixed_dictionaries({}, optional=OVERRIDE_FIELDS)},
)


def test_every_field_of_the_schema_is_drawn():
    """A field added to the schema without a strategy here fails this test."""
    from agentgen.spec import spec_schema

    schema = spec_schema()["properties"]
    assert set(schema) == {"name", "scale", "overrides", *FIELDS}
    assert set(schema["overrides"]["properties"]) == set(OVERRIDE_FIELDS)


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
@given(data=answers, via_cli=st.integers(0, 7).map(lambda n: n == 0))
def test_every_valid_answer_set_renders_a_valid_project(scale, data, via_cli):
    """One set in eight goes through the CLI with an answers file on disk (`agentgen render`,
    which also runs checkov), as a user or a CI job would."""
    if via_cli:
        _renders_valid_through_the_cli({**data, "scale": scale})
    else:
        _renders_valid({**data, "scale": scale}, exclude={"checkov"})


def _renders_valid_through_the_cli(data: dict) -> None:
    import subprocess
    import sys

    import yaml

    venv_tool("helm", "scripts/install-validators.sh")
    base = Path(tempfile.mkdtemp(prefix="agentgen-prop-cli-"))
    try:
        answers = base / "answers.yml"
        answers.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        proc = subprocess.run([sys.executable, "-m", "agentgen", "render", "--config", str(answers),
                               "--out", str(base / "out")], capture_output=True, text=True,
                              check=False, stdin=subprocess.DEVNULL, timeout=600)
        if proc.returncode == 2:  # refused: only by documented rules, one line each
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            assert lines and all(any(rule in line for rule in CROSS_FIELD) for line in lines), \
                proc.stderr
            assert not (base / "out").exists()
            return
        assert proc.returncode == 0, (data, proc.stderr[-2000:])
    finally:
        shutil.rmtree(base, ignore_errors=True)


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
