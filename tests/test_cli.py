"""`agentgen` as a user meets it: exit codes, one-line errors, nothing written on failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentgen.cli import app

runner = CliRunner()


def run(*args: str, cwd: Path | None = None):
    if cwd is not None:
        old = Path.cwd()
        os.chdir(cwd)
    try:
        return runner.invoke(app, list(args))
    finally:
        if cwd is not None:
            os.chdir(old)


def assert_clean_failure(result, code: int, *needles: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output


def test_new_no_input_writes_a_committed_repo(tmp_path):
    result = run("new", str(tmp_path / "demo"), "--no-input")
    assert result.exit_code == 0, result.output
    repo = tmp_path / "demo"
    assert (repo / "Dockerfile").is_file() and (repo / "compose.yaml").is_file()
    assert "Next steps" in result.output and "initial commit" in result.output
    log = subprocess.run(["git", "log", "--oneline"], cwd=repo, capture_output=True, text=True)
    assert "Initial commit from agentgen" in log.stdout
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True,
                            text=True)
    assert status.stdout == ""


def test_flags_and_config_file_combine_flags_winning(tmp_path):
    config = tmp_path / "answers.yml"
    config.write_text("name: from-config\nscale: large\ntargets: [compose]\n"
                      "overrides:\n  replicas: 4\n")
    result = run("new", str(tmp_path / "out"), "--config", str(config), "--scale", "medium",
                 "--no-input", "--no-git")
    assert result.exit_code == 0, result.output
    answers = (tmp_path / "out" / ".copier-answers.yml").read_text()
    assert "name: from-config" in answers and "scale: medium" in answers
    assert "replicas: 4" in answers
    assert not (tmp_path / "out" / ".git").exists()


@pytest.mark.parametrize(("args", "code", "needles"), [
    (["--name", "My_App"], 2, ["name: 'My_App' is invalid", "DNS-1123"]),
    (["--name", "-x"], 2, ["name: '-x' is invalid"]),
    (["--name", "x" * 64], 2, ["name: ", "at most 40"]),
    (["--name", "../../etc"], 2, ["name: '../../etc' is invalid"]),
    (["--scale", "huge"], 2, ["scale: 'huge' is not one of: dev, small, medium, large"]),
    (["--secrets", "keepass"], 2, ["secrets: 'keepass' is not one of: env, kubernetes"]),
    (["--target", "nomad"], 2, ["targets[0]: 'nomad' is not one of: compose, kubernetes"]),
    (["--secrets", "sealed-secrets"], 2, ["secrets: 'sealed-secrets' needs target kubernetes"]),
])
def test_bad_flags_fail_in_one_line_and_write_nothing(tmp_path, args, code, needles):
    result = run("new", str(tmp_path / "demo"), "--no-input", *args)
    assert_clean_failure(result, code, *needles)
    assert len(result.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("text", "needles"), [
    ("name: demo\nscale: dev: x\n", ["answers.yml:2:11: invalid YAML: mapping values"]),
    ("name: demo\ncolour: blue\n", ["colour: unknown key (allowed: name,"]),
    ("name: demo\nscale: 3\n", ["scale: 3 is not one of: dev, small"]),
    ("name: demo\ntargets: compose\n", ["targets: expected array, got string"]),
    ("name: demo\ncheckpoint_retention_days: ten\n", ["checkpoint_retention_days: expected integer"]),
    ("- name\n", ["must be a mapping"]),
    ("name: demo\nsecrets: env\ntargets: [helm]\n", ["secrets: 'env' cannot feed"]),
])
def test_bad_config_files_fail_cleanly(tmp_path, text, needles):
    config = tmp_path / "answers.yml"
    config.write_text(text)
    result = run("new", str(tmp_path / "demo"), "--config", str(config), "--no-input")
    assert_clean_failure(result, 2, *needles)
    assert not (tmp_path / "demo").exists()


def test_missing_config_file(tmp_path):
    result = run("new", str(tmp_path / "demo"), "--config", str(tmp_path / "nope.yml"), "--no-input")
    assert_clean_failure(result, 2, "nope.yml: cannot read answers file")


def test_destination_is_a_file(tmp_path):
    (tmp_path / "demo").write_text("mine")
    result = run("new", str(tmp_path / "demo"), "--no-input")
    assert_clean_failure(result, 1, "is not a directory")
    assert (tmp_path / "demo").read_text() == "mine"


def test_non_empty_destination_needs_force_and_force_keeps_user_files(tmp_path):
    dest = tmp_path / "demo"
    dest.mkdir()
    (dest / "NOTES.md").write_text("mine")
    (dest / "Dockerfile").write_text("FROM scratch\n")
    result = run("new", str(dest), "--no-input")
    assert_clean_failure(result, 1, "destination is not empty", "--force")
    assert (dest / "Dockerfile").read_text() == "FROM scratch\n"
    result = run("new", str(dest), "--no-input", "--force")
    assert result.exit_code == 0, result.output
    assert (dest / "NOTES.md").read_text() == "mine"
    assert "FROM python:" in (dest / "Dockerfile").read_text()


def test_force_refuses_a_langgraph_project_agentgen_did_not_generate(tmp_path):
    """`new --force` would replace the project's own langgraph.json, pyproject.toml and README."""
    dest = tmp_path / "theirs"
    dest.mkdir()
    files = {"langgraph.json": '{"graphs": {"a": "./agent.py:graph"}, "dependencies": ["."]}\n',
             "pyproject.toml": '[project]\nname = "theirs"\nversion = "1"\n',
             "agent.py": "graph = None\n"}
    for name, text in files.items():
        (dest / name).write_text(text)
    result = run("new", str(dest), "--no-input", "--force")
    assert_clean_failure(result, 1, "holds a LangGraph project agentgen did not generate")
    assert sorted(p.name for p in dest.iterdir()) == sorted(files)
    assert all((dest / name).read_text() == text for name, text in files.items())


def _unwritable_dir(tmp_path: Path) -> Path:
    """A directory this process cannot write to: chmod for a user; for root, a virtual file system."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        return locked
    probe = Path("/sys/agentgen-probe")
    try:
        probe.mkdir()
    except OSError:
        return probe.parent
    probe.rmdir()
    pytest.skip("no directory here is unwritable for root (/sys is writable)")


def test_unwritable_destination(tmp_path):
    locked = _unwritable_dir(tmp_path)
    before = sorted(os.listdir(locked))
    result = run("new", str(locked / "agentgen-demo"), "--no-input")
    assert_clean_failure(result, 1, "not writable")
    assert sorted(os.listdir(locked)) == before


def test_unwritable_destination_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    result = run("new", str(tmp_path / "file" / "demo"), "--no-input")
    assert_clean_failure(result, 1, "is not a directory")


def test_dry_run_lists_files_and_writes_nothing(tmp_path):
    result = run("new", str(tmp_path / "demo"), "--no-input", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Would write" in result.output and "Dockerfile" in result.output
    assert list(tmp_path.iterdir()) == []


def test_name_defaults_to_dest_and_dest_to_name(tmp_path):
    result = run("new", "--name", "named", "--no-input", "--no-git", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "named" / "src" / "named").is_dir()
    result = run("new", "--no-input", cwd=tmp_path)
    assert_clean_failure(result, 1, "name: is required")


def test_schema_presets_validate_and_version(tmp_path):
    schema = json.loads(run("schema").output)
    assert schema["properties"]["scale"]["enum"] == ["dev", "small", "medium", "large"]
    presets = run("presets")
    assert presets.exit_code == 0 and "db_pool_overflow" in presets.output
    assert run("--version").output.startswith("agentgen ")
    run("new", str(tmp_path / "demo"), "--no-input", "--no-git")
    ok = run("validate", str(tmp_path / "demo"))
    assert ok.exit_code == 0, ok.output
    (tmp_path / "demo" / "compose.yaml").write_text("services:\n  agent:\n    image: 3\n    bogus: 1\n")
    bad = run("validate", str(tmp_path / "demo"))
    assert_clean_failure(bad, 1, "compose.yaml: [compose-spec]", "validation error")


def test_help_does_not_import_copier():
    code = ("import sys\nfrom agentgen.cli import app\n"
            "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('copier', 'jsonschema', 'langgraph_cli', 'rich') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "agentgen", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.startswith("agentgen ")


def test_render_is_deterministic_and_keeps_user_owned_files(tmp_path):
    from .conftest import snapshot

    config = tmp_path / "answers.yml"
    config.write_text("name: demo\nscale: small\ntargets: [compose]\n")
    for out in ("one", "two"):
        result = run("render", "--config", str(config), "--out", str(tmp_path / out))
        assert result.exit_code == 0, result.output
    assert snapshot(tmp_path / "one") == snapshot(tmp_path / "two")
    assert not (tmp_path / "one" / ".git").exists()

    # Regenerating over a project restores what the template owns and keeps what the user owns.
    project = tmp_path / "one"
    (project / "src" / "demo" / "graph.py").write_text("# our agent\n")
    (project / "Dockerfile").write_text("FROM scratch\n")
    result = run("render", "--config", str(config), "--out", str(project))
    assert result.exit_code == 0, result.output
    assert (project / "src" / "demo" / "graph.py").read_text() == "# our agent\n"
    assert (project / "Dockerfile").read_bytes() == (tmp_path / "two" / "Dockerfile").read_bytes()


def test_render_unknown_template_version_is_one_line(tmp_path):
    config = tmp_path / "answers.yml"
    config.write_text("name: demo\n")
    result = run("render", "--config", str(config), "--out", str(tmp_path / "out"),
                 "--template-version", "v9.9.9")
    assert_clean_failure(result, 1, "template version v9.9.9 is unknown")
    assert not (tmp_path / "out").exists()


def test_new_refuses_an_answers_file_that_says_mode_init(tmp_path):
    """`mode: init` is what init records; given to `new` it once wrote a project with no agent."""
    answers = tmp_path / "answers.yml"
    answers.write_text("name: demo\nmode: init\n")
    result = run("new", str(tmp_path / "demo"), "--config", str(answers), "--no-input")
    assert_clean_failure(result, 2, "mode", "agentgen init")
    assert not (tmp_path / "demo").exists()


def _agentgen(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentgen", *args], cwd=cwd, capture_output=True,
                          text=True, check=False, stdin=subprocess.DEVNULL,
                          env={**os.environ, **env}, timeout=300)


@pytest.mark.parametrize("env", [
    {"GIT_DIR": "/nonexistent/.git", "GIT_WORK_TREE": "/nonexistent"},  # as inside a git hook
    {"GIT_CONFIG_COUNT": "abc"},
    {"GIT_INDEX_FILE": "/nonexistent/index"},
])
def test_new_ignores_git_variables_of_the_calling_environment(tmp_path, env):
    made = _agentgen(["new", "demo", "--no-input"], tmp_path, **env)
    assert made.returncode == 0, made.stderr
    log = subprocess.run(["git", "log", "--oneline"], cwd=tmp_path / "demo", capture_output=True,
                         text=True, check=True, env={k: v for k, v in os.environ.items()
                                                     if not k.startswith("GIT_")})
    assert len(log.stdout.splitlines()) == 1


def test_checkov_platform_variables_do_not_break_kubernetes_renders(tmp_path):
    made = _agentgen(["new", "demo", "--no-input", "--no-git", "--target", "kubernetes"], tmp_path,
                     BC_API_KEY="00000000-0000-0000-0000-000000000000")
    assert made.returncode == 0, made.stderr


@pytest.mark.parametrize("make", ["dangling", "loop", "long"])
def test_unusable_destinations_are_one_line(tmp_path, make):
    if make == "dangling":
        (tmp_path / "dest").symlink_to(tmp_path / "missing")
        dest = "dest"
    elif make == "loop":
        (tmp_path / "a").symlink_to(tmp_path / "b")
        (tmp_path / "b").symlink_to(tmp_path / "a")
        dest = "a/demo"
    else:
        dest = "x" * 300
    made = _agentgen(["new", dest, "--no-input", "--no-git"], tmp_path)
    assert made.returncode != 0
    lines = [line for line in made.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in made.stderr, made.stderr


def test_a_template_history_path_too_long_is_one_line(tmp_path):
    made = _agentgen(["new", "demo", "--no-input", "--no-git"], tmp_path,
                     AGENTGEN_TEMPLATE_HISTORY="x" * 300)
    lines = [line for line in made.stderr.splitlines() if line.strip()]
    assert made.returncode != 0 and len(lines) == 1 and "Traceback" not in made.stderr, made.stderr
