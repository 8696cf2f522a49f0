"""agentgen touches only its own paths: symlinks that lead out of the project are never followed for
a read or a write (init, new --force, accept, check, validate), tampered or hostile project files
are refused in one line and in bounded time. Each case runs the real CLI process and checks the
outside directory byte for byte."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .test_hostile import LIMIT_SECONDS, run_cli

FIXTURES = Path(__file__).parent / "fixtures" / "byo"
IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, **IDENTITY})


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the project holding something private."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.env").write_text("TOKEN=do-not-print-me\n")
    return elsewhere


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """`agentgen new demo` (committed), copied by each test that changes it."""
    base = tmp_path_factory.mktemp("generated")
    code, stderr, _, _ = run_cli(["new", "demo", "--no-input"], base)
    assert code == 0, stderr
    return base / "demo"


@pytest.fixture
def project(generated: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "demo"
    shutil.copytree(generated, copy, symlinks=True)
    return copy


@pytest.mark.parametrize("linked", ["scripts", "deploy"])
def test_init_never_writes_through_a_symlinked_directory(tmp_path, outside, linked):
    project = tmp_path / "agent"
    shutil.copytree(FIXTURES / "flat-requirements", project)
    (project / linked).symlink_to(outside, target_is_directory=True)
    before_outside, before_project = _tree(outside), _tree(project)

    code, stderr, seconds, _ = run_cli(["init", str(project), "--no-input"], tmp_path)

    assert code != 0 and seconds < 60
    line = _one_line(stderr)
    assert f"{linked}/" in line and "outside the project" in line, line
    assert _tree(outside) == before_outside
    assert _tree(project) == before_project


def test_new_force_never_writes_through_a_symlinked_directory(project, outside, tmp_path):
    shutil.rmtree(project / "scripts")
    (project / "scripts").symlink_to(outside, target_is_directory=True)
    before = _tree(outside)
    code, stderr, _, _ = run_cli(["new", str(project), "--no-input", "--force", "--no-git"], tmp_path)
    assert code != 0
    assert "outside the project" in _one_line(stderr)
    assert _tree(outside) == before


def test_check_does_not_read_a_file_that_leads_outside(project, outside, tmp_path):
    (project / "Dockerfile").unlink()
    (project / "Dockerfile").symlink_to(outside / "secret.env")
    proc = subprocess.run([sys.executable, "-m", "agentgen", "check", str(project)],
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "do-not-print-me" not in proc.stdout + proc.stderr
    assert "Dockerfile" in proc.stdout and "outside the project" in proc.stdout, proc.stdout


def test_accept_never_writes_through_a_symlinked_state_directory(project, outside, tmp_path):
    (project / ".agentgen").symlink_to(outside, target_is_directory=True)
    with (project / "Makefile").open("a") as handle:
        handle.write("\n# ours\n")
    before = _tree(outside)
    code, stderr, _, _ = run_cli(["accept", "-C", str(project), "Makefile"], tmp_path)
    assert code != 0
    assert "outside the project" in _one_line(stderr)
    assert _tree(outside) == before


@pytest.mark.parametrize("entry", ["../../../etc/passwd", "/etc/passwd", "deploy/../../x"])
def test_a_tampered_accepted_file_is_refused(project, tmp_path, entry):
    (project / ".agentgen").mkdir()
    (project / ".agentgen" / "accepted.json").write_text(json.dumps({"files": {entry: "0" * 64}}))
    code, stderr, _, _ = run_cli(["check", str(project)], tmp_path)
    assert code != 0 and code != 1  # not a verdict: the check could not run
    line = _one_line(stderr)
    assert entry in line and "not a path inside the project" in line, line


def test_a_deeply_nested_accepted_file_is_one_line(project, tmp_path):
    (project / ".agentgen").mkdir()
    (project / ".agentgen" / "accepted.json").write_text("[" * 100_000 + "]" * 100_000)
    code, stderr, seconds, _ = run_cli(["check", str(project)], tmp_path)
    assert code not in (0, 1) and seconds < LIMIT_SECONDS * 4
    assert "accepted.json" in _one_line(stderr)


def test_a_deeply_nested_langgraph_json_is_one_line_for_init(tmp_path):
    """A user's langgraph.json nested 100k deep: `init` refuses it in one line naming the file
    (it ended in a RecursionError traceback), and writes nothing."""
    project = tmp_path / "deep"
    project.mkdir()
    (project / "langgraph.json").write_text('{"graphs": {"a": "./a.py:g"}, "env": '
                                            + "[" * 100_000 + "]" * 100_000 + "}")
    before = _tree(project)
    code, stderr, seconds, _ = run_cli(["init", str(project), "--no-input"], tmp_path)
    assert code == 1 and seconds < LIMIT_SECONDS * 4  # (a user error)
    assert "langgraph.json" in _one_line(stderr) and "nested" in stderr, stderr
    assert _tree(project) == before


def test_an_alias_bomb_in_the_recorded_answers_does_not_hang_check(project, tmp_path):
    from .test_hostile import _billion_laughs

    answers = project / ".copier-answers.yml"
    answers.write_text(answers.read_text() + "bomb:\n" + "".join(
        "  " + line + "\n" for line in _billion_laughs().splitlines()))
    code, stderr, seconds, rss = run_cli(["check", str(project)], tmp_path)
    assert code not in (0, 1) and seconds < LIMIT_SECONDS * 4 and rss < 500
    assert "aliases" in _one_line(stderr)


def test_validate_neither_quotes_an_outside_file_nor_blocks_on_a_fifo(project, outside, tmp_path):
    (outside / "private.yaml").write_text("password: hunter2\n  bad: [indent\n")
    (project / "deploy" / "extra.yaml").symlink_to(outside / "private.yaml")
    os.mkfifo(project / "deploy" / "pipe.yaml")
    code, stderr, seconds, _ = run_cli(["validate", str(project)], tmp_path)
    assert seconds < 120
    assert "hunter2" not in stderr and "private.yaml" not in stderr, stderr
    assert code == 0, stderr
