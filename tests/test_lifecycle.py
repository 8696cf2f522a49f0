"""A generated repository over time: `agentgen update`, plain `copier update`, `agentgen check`.

Each test builds a template history in a git repository the way a release does (the current
`templates/` tagged v1.0.0, then a changed copy tagged v2.0.0) and points agentgen at it with
AGENTGEN_TEMPLATE_HISTORY, as a company mirror would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agentgen import check, load_spec, update
from agentgen.cli import app
from agentgen.history import HISTORY_ENV, PUBLIC_SOURCE
from agentgen.render import render

pytestmark = pytest.mark.renders

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "templates"
ANSWERS = {"name": "demo", "scale": "dev", "targets": ["compose"], "secrets": "env"}
IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **IDENTITY}).stdout


def commit_all(repo: Path, message: str, tag: str | None = None) -> None:
    git(repo, "add", "--all", "--force")
    git(repo, "commit", "--quiet", "-m", message)
    if tag:
        git(repo, "tag", tag)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def v2_changes(template: Path) -> None:
    """The release after v1: changes a line, adds a file, removes a file."""
    project = template / "project"
    edit(project / "Makefile.jinja", ": everyday commands", ": (v2) everyday commands")
    edit(project / "README.md.jinja", "## ", "## (v2) ")  # the user's once generated: not applied
    (project / "docs" / "upgrading.md").write_text("# Upgrading\n\nRun agentgen update.\n")
    (project / "scripts" / "lock.sh").unlink()


@pytest.fixture
def history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Build a v1.0.0 (current templates) -> v2.0.0 history; returns the repository."""
    for key, value in IDENTITY.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("COPIER_CACHE_DIR", str(tmp_path / "copier-cache"))

    def build(change: Callable[[Path], None] = v2_changes) -> Path:
        repo = tmp_path / "history"
        shutil.copytree(TEMPLATES, repo, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        git(repo, "init", "--quiet")
        commit_all(repo, "v1", "v1.0.0")
        change(repo)
        commit_all(repo, "v2", "v2.0.0")
        monkeypatch.setenv(HISTORY_ENV, str(repo))
        return repo

    return build


def generated_repo(tmp_path: Path, version: str = "v1.0.0", answers: dict | None = None) -> Path:
    """A project rendered from `version` of the history and committed, as `agentgen new` leaves it."""
    from agentgen.history import template_at

    dest = tmp_path / "demo"
    spec = load_spec(answers or ANSWERS)
    with template_at(version) as template:
        render(spec, dest, template=template, version=version)
    git(dest, "init", "--quiet", "--initial-branch=main")
    commit_all(dest, "generated")
    return dest


def user_edits(repo: Path) -> None:
    """Two generated files edited (one of them also changed by v2, on another line), one added,
    and the README (the user's once generated) edited."""
    makefile = repo / "Makefile"
    makefile.write_text(makefile.read_text() + "\n# Our runbook\nrunbook:\n\t@echo page the on-call\n")
    readme = repo / "README.md"
    readme.write_text(readme.read_text() + "\n## Our runbook\n\nPage the on-call.\n")
    edit(repo / "Dockerfile", "ENTRYPOINT", "# our base image policy: see wiki\nENTRYPOINT")
    (repo / "notes.txt").write_text("ours\n")
    commit_all(repo, "our edits")


def assert_updated_keeping_edits(repo: Path) -> None:
    makefile = (repo / "Makefile").read_text()
    assert ": (v2) everyday commands" in makefile  # v2's change
    assert "# Our runbook" in makefile  # the user's, in the same file
    readme = (repo / "README.md").read_text()
    assert "## (v2) " not in readme and "## Our runbook" in readme  # the user's file: not updated
    assert "# our base image policy: see wiki" in (repo / "Dockerfile").read_text()
    assert (repo / "docs" / "upgrading.md").read_text().startswith("# Upgrading")  # added by v2
    assert not (repo / "scripts" / "lock.sh").exists()  # removed by v2
    assert (repo / "notes.txt").read_text() == "ours\n"  # the user's own file
    recorded = yaml.safe_load((repo / ".copier-answers.yml").read_text())
    assert recorded["_commit"] == "v2.0.0"
    assert recorded["_src_path"] == PUBLIC_SOURCE
    assert "<<<<<<<" not in makefile


def test_update_keeps_user_edits_and_applies_the_new_template(tmp_path, history):
    history()
    repo = generated_repo(tmp_path)
    user_edits(repo)

    result = update(repo)

    assert result.ok and (result.from_version, result.to_version) == ("v1.0.0", "v2.0.0")
    assert_updated_keeping_edits(repo)
    changes = dict((path, letter) for letter, path in result.changes)
    assert changes["Makefile"] == "M" and changes["docs/upgrading.md"] == "A"
    assert "README.md" not in changes
    assert changes["scripts/lock.sh"] == "D" and "notes.txt" not in changes
    # Against v2, the only differences left are the user's edits.
    assert {d.path for d in check(repo).drift} == {"Makefile", "Dockerfile"}


def test_plain_copier_update_against_the_published_git_source(tmp_path, history):
    """`copier update` alone, with the recorded public URL served by a local git repository."""
    source = history()
    repo = generated_repo(tmp_path)
    user_edits(repo)
    env = {**os.environ, "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.{source}.insteadOf",
           "GIT_CONFIG_VALUE_0": PUBLIC_SOURCE}
    env.pop(HISTORY_ENV)
    copier = Path(sys.executable).with_name("copier")
    proc = subprocess.run([str(copier), "update", "--defaults", "--conflict", "inline", str(repo)],
                          env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert_updated_keeping_edits(repo)


def test_conflicting_edit_leaves_markers_lists_the_file_and_exits_1(tmp_path, history):
    history(lambda t: edit(t / "project" / "Dockerfile.jinja", "ENTRYPOINT", "# v2 says\nENTRYPOINT"))
    repo = generated_repo(tmp_path)
    edit(repo / "Dockerfile", "ENTRYPOINT", "# we say\nENTRYPOINT")
    commit_all(repo, "ours")

    result = CliRunner().invoke(app, ["update", str(repo)])

    assert result.exit_code == 1, result.output
    assert "conflict" in result.output and "Dockerfile" in result.output
    dockerfile = (repo / "Dockerfile").read_text()
    # Your side first, then the template's, named.
    assert "<<<<<<< yours\n# we say\n=======\n# v2 says\n>>>>>>> template v2.0.0\n" in dockerfile


def test_a_renamed_file_carries_the_users_edits(tmp_path, history):
    def rename(template: Path) -> None:
        scripts = template / "project" / "scripts"
        (scripts / "restore.sh").rename(scripts / "restore-database.sh")

    history(rename)
    repo = generated_repo(tmp_path)
    edit(repo / "scripts" / "restore.sh", "set -", "# restores need a ticket\nset -")
    commit_all(repo, "ours")

    result = update(repo)

    moved = (repo / "scripts" / "restore-database.sh").read_text()
    assert "# restores need a ticket" in moved
    assert result.carried == [("scripts/restore.sh", "scripts/restore-database.sh")]
    assert os.access(repo / "scripts" / "restore-database.sh", os.X_OK)


def test_a_renamed_file_whose_edits_conflict_shows_yours_first(tmp_path, history):
    def rename(template: Path) -> None:
        scripts = template / "project" / "scripts"
        (scripts / "restore.sh").rename(scripts / "restore-database.sh")
        edit(scripts / "restore-database.sh", "set -", "# v2 restores\nset -")

    history(rename)
    repo = generated_repo(tmp_path)
    edit(repo / "scripts" / "restore.sh", "set -", "# restores need a ticket\nset -")
    commit_all(repo, "ours")

    result = update(repo)

    assert [c.path for c in result.conflicts] == ["scripts/restore-database.sh"]
    moved = (repo / "scripts" / "restore-database.sh").read_text()
    assert ("<<<<<<< yours\n# restores need a ticket\n=======\n# v2 restores\n"
            ">>>>>>> template v2.0.0\n") in moved
    assert os.access(repo / "scripts" / "restore-database.sh", os.X_OK)


def test_a_removed_file_the_user_edited_is_kept_as_a_conflict(tmp_path, history):
    history(lambda t: (t / "project" / "scripts" / "lock.sh").unlink())
    repo = generated_repo(tmp_path)
    (repo / "scripts" / "lock.sh").write_text("#!/bin/sh\necho our lock\n")
    commit_all(repo, "ours")

    result = CliRunner().invoke(app, ["update", str(repo)])

    assert result.exit_code == 1, result.output
    assert "scripts/lock.sh" in result.output
    assert (repo / "scripts" / "lock.sh").read_text() == "#!/bin/sh\necho our lock\n"
    assert os.access(repo / "scripts" / "lock.sh", os.X_OK)  # its mode kept too


def test_update_with_data_grows_the_scale(tmp_path, history):
    history()
    repo = generated_repo(tmp_path, answers={**ANSWERS, "scale": "small"})
    result = CliRunner().invoke(app, ["update", str(repo), "--to", "v1.0.0", "--data", "scale=large"])
    assert result.exit_code == 0, result.output
    recorded = yaml.safe_load((repo / ".copier-answers.yml").read_text())
    assert recorded["scale"] == "large" and recorded["_commit"] == "v1.0.0"
    assert "nginx" in (repo / "compose.yaml").read_text()  # large runs nginx in front
    assert check(repo).status == "outdated"


@pytest.mark.parametrize("case", ["dirty", "not-git", "downgrade", "no-answers", "bad-data"])
def test_update_refuses_with_one_line(tmp_path, history, case):
    history()
    repo = generated_repo(tmp_path, version="v2.0.0")
    args, needle, code = ["update", str(repo)], "", 1
    if case == "dirty":
        (repo / "Dockerfile").write_text("changed\n")
        needle = "uncommitted changes"
    elif case == "not-git":
        shutil.rmtree(repo / ".git")
        needle = "not a git repository"
    elif case == "downgrade":
        args += ["--to", "v1.0.0"]
        needle = "refusing to downgrade from v2.0.0 to v1.0.0"
    elif case == "no-answers":
        (repo / ".copier-answers.yml").unlink()
        commit_all(repo, "drop answers")
        needle = "no .copier-answers.yml"
    else:
        args += ["--data", "scale=huge"]
        needle, code = "scale", 2
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts}

    result = CliRunner().invoke(app, args)

    assert result.exit_code == code, result.output
    assert needle in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    after = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts}
    assert after == before


def test_check_exit_codes_and_json(tmp_path, history):
    history()
    repo = generated_repo(tmp_path, version="v2.0.0")
    runner = CliRunner()

    assert runner.invoke(app, ["check", str(repo)]).exit_code == 0

    # User-owned files (the graph) and the user's own files are not drift.
    (repo / "src" / "demo" / "graph.py").write_text("# our agent\n")
    (repo / "notes.txt").write_text("ours\n")
    assert runner.invoke(app, ["check", str(repo)]).exit_code == 0

    edit(repo / "Dockerfile", "ENTRYPOINT", "USER root\nENTRYPOINT")
    (repo / "scripts" / "backup.sh").unlink()
    result = runner.invoke(app, ["check", str(repo)])
    assert result.exit_code == 1
    assert "+USER root" in result.output and "--- a/Dockerfile (template v2.0.0)" in result.output
    report = json.loads(runner.invoke(app, ["check", str(repo), "--format", "json"]).output)
    assert report["status"] == "drift"
    assert {(d["path"], d["kind"]) for d in report["drift"]} == {
        ("Dockerfile", "modified"), ("scripts/backup.sh", "missing")}


def test_accepted_customisations_are_not_drift_until_they_change(tmp_path, history):
    history()
    repo = generated_repo(tmp_path, version="v2.0.0")
    runner = CliRunner()
    edit(repo / "Dockerfile", "ENTRYPOINT", "# our base image policy\nENTRYPOINT")
    assert runner.invoke(app, ["check", str(repo)]).exit_code == 1

    result = runner.invoke(app, ["accept", "-C", str(repo), str(repo / "Dockerfile")])
    assert result.exit_code == 0 and "accepted Dockerfile" in result.output, result.output
    accepted = json.loads((repo / ".agentgen" / "accepted.json").read_text())
    assert list(accepted["files"]) == ["Dockerfile"]
    report = json.loads(runner.invoke(app, ["check", str(repo), "--format", "json"]).output)
    assert (report["status"], report["accepted"]) == ("clean", ["Dockerfile"])

    # A later change is drift again; so is any other owned file.
    edit(repo / "Dockerfile", "# our base image policy", "# our base image policy, v2")
    (repo / "compose.yaml").write_text((repo / "compose.yaml").read_text() + "# ours\n")
    report = json.loads(runner.invoke(app, ["check", str(repo), "--format", "json"]).output)
    assert report["status"] == "drift"
    assert {d["path"] for d in report["drift"]} == {"Dockerfile", "compose.yaml"}
    # Restored to the template's content: accepting it again drops the record.
    git(repo, "checkout", "--", "compose.yaml")
    result = runner.invoke(app, ["accept", "-C", str(repo), str(repo / "compose.yaml")])
    assert result.exit_code == 0 and "nothing to accept" in result.output


@pytest.mark.parametrize(("path", "message"), [
    ("src/demo/graph.py", "src/demo/graph.py: yours (agentgen never reports it as drift)"),
    ("notes.txt", "notes.txt: not a file agentgen renders"),
    ("missing.txt", "missing.txt: no such file"),
    ("../outside.txt", "not inside the project"),
    ("Dockerfile", "Dockerfile: has conflict markers"),
])
def test_accept_refuses_what_it_cannot_accept_with_one_line(tmp_path, history, path, message):
    history()
    repo = generated_repo(tmp_path, version="v2.0.0")
    (repo / "notes.txt").write_text("ours\n")
    (tmp_path / "outside.txt").write_text("x\n")
    edit(repo / "Dockerfile", "ENTRYPOINT", "<<<<<<< before updating\n=======\n>>>>>>> after\n"
         "ENTRYPOINT")
    result = CliRunner().invoke(app, ["accept", "-C", str(repo), str(repo / path)])
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (repo / ".agentgen").exists()


def test_update_conflict_resolved_and_accepted_then_check_is_clean(tmp_path, history):
    """The round trip of a customised repository: an update conflicts, the user resolves and
    accepts, check is clean; the next clean update keeps the accepted file accepted."""
    def v2(template: Path) -> None:
        edit(template / "project" / "Dockerfile.jinja", "ENTRYPOINT", "# v2 says\nENTRYPOINT")
        edit(template / "project" / "Makefile.jinja", ": everyday commands", ": (v2) everyday commands")

    history(v2)
    repo = generated_repo(tmp_path)
    edit(repo / "Dockerfile", "ENTRYPOINT", "# we say\nENTRYPOINT")
    commit_all(repo, "ours")
    runner = CliRunner()
    result = runner.invoke(app, ["update", str(repo)])
    assert result.exit_code == 1 and "agentgen accept Dockerfile" in result.output, result.output

    text = (repo / "Dockerfile").read_text()
    resolved = "\n".join(line for line in text.splitlines()
                          if not line.startswith(("<<<<<<<", "=======", ">>>>>>>"))) + "\n"
    (repo / "Dockerfile").write_text(resolved)
    assert runner.invoke(app, ["check", str(repo)]).exit_code == 1
    assert runner.invoke(app, ["accept", "-C", str(repo), str(repo / "Dockerfile")]).exit_code == 0
    assert runner.invoke(app, ["check", str(repo)]).exit_code == 0
    commit_all(repo, "updated to v2, Dockerfile customised")

    # v3 changes the Makefile only: the accepted Dockerfile is carried, check stays clean.
    source = tmp_path / "history"
    edit(source / "project" / "Makefile.jinja", "(v2) everyday", "(v3) everyday")
    commit_all(source, "v3", "v3.0.0")
    result = update(repo)
    assert result.ok
    assert runner.invoke(app, ["check", str(repo)]).exit_code == 0
    assert "# we say" in (repo / "Dockerfile").read_text()


def test_check_reports_a_newer_template_with_exit_2(tmp_path, history):
    history()
    repo = generated_repo(tmp_path, version="v1.0.0")
    result = CliRunner().invoke(app, ["check", str(repo), "--format", "json"])
    assert result.exit_code == 2, result.output
    report = json.loads(result.output)
    assert (report["status"], report["recorded_version"], report["latest_version"]) == (
        "outdated", "v1.0.0", "v2.0.0")


def test_check_cannot_run_exits_3(tmp_path):
    result = CliRunner().invoke(app, ["check", str(tmp_path)])
    assert result.exit_code == 3 and "no .copier-answers.yml" in result.output


def test_update_offline_from_the_installed_wheel(tmp_path, history):
    """A wheel built from a checkout tagged v1.0.0 and v2.0.0 updates a v1 project with no network:
    git may use no transport but local files, and the recorded `_src_path` host does not exist."""
    import sysconfig

    uv = Path(sys.executable).with_name("uv")
    if not uv.is_file():
        pytest.skip("uv is not installed (pip install uv)")
    checkout = tmp_path / "agentgen"
    tracked = git(ROOT, "ls-files", "-z").split("\0")
    for rel in filter(None, tracked):
        if (ROOT / rel).is_file() and not rel.startswith("examples/"):
            (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, checkout / rel)
    version_file = checkout / "src" / "agentgen" / "_version.py"
    git(checkout, "init", "--quiet")
    version_file.write_text('__version__ = "1.0.0"\n')
    commit_all(checkout, "release 1.0.0", "v1.0.0")
    v2_changes(checkout / "templates")
    version_file.write_text('__version__ = "2.0.0"\n')
    commit_all(checkout, "release 2.0.0", "v2.0.0")
    subprocess.run([str(uv), "build", "--wheel", "--quiet", "--out-dir", str(tmp_path / "dist"),
                    str(checkout)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("agentgen_langgraph-2.0.0-*.whl"))
    # A virtualenv with the wheel, borrowing (not importing agentgen from) this venv's dependencies.
    venv = tmp_path / "venv"
    subprocess.run([str(uv), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(uv), "pip", "install", "--quiet", "--no-deps", "--python",
                    str(venv / "bin" / "python"), str(wheel)], check=True)
    env = {key: value for key, value in os.environ.items()
           if key != HISTORY_ENV and not key.startswith("GIT_CONFIG")}
    env.update(IDENTITY, GIT_ALLOW_PROTOCOL="file", HOME=str(tmp_path))
    agentgen = str(venv / "bin" / "agentgen")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([agentgen, *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, check=False)

    config = tmp_path / "answers.yml"
    config.write_text(yaml.safe_dump(ANSWERS))
    made = run("render", "--config", str(config), "--out", "demo", "--template-version", "v1.0.0")
    assert made.returncode == 0, made.stderr
    repo = tmp_path / "demo"
    edit(repo / ".copier-answers.yml", PUBLIC_SOURCE, "https://agentgen.invalid/template.git")
    git(repo, "init", "--quiet")
    commit_all(repo, "generated by the wheel at v1.0.0")
    user_edits(repo)
    assert run("check", "demo").returncode == 1  # the user's edits to owned files are drift

    updated = run("update", "demo")

    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert "from template v1.0.0 to v2.0.0" in " ".join(updated.stdout.split())
    makefile = (repo / "Makefile").read_text()
    assert ": (v2) everyday commands" in makefile and "# Our runbook" in makefile
    assert not (repo / "scripts" / "lock.sh").exists() and (repo / "docs" / "upgrading.md").exists()
    recorded = yaml.safe_load((repo / ".copier-answers.yml").read_text())
    assert recorded["_commit"] == "v2.0.0"
    assert recorded["_src_path"] == "https://agentgen.invalid/template.git"


@pytest.mark.parametrize("failure", [KeyboardInterrupt(), RuntimeError("injected")])
def test_an_interrupted_update_leaves_the_repository_as_committed(tmp_path, history, monkeypatch,
                                                                   failure):
    import agentgen.lifecycle

    history()
    repo = generated_repo(tmp_path)
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts}

    def half_done(root, data, target):
        (root / "Dockerfile").write_text("half-written\n")
        (root / "new-file.txt").write_text("new\n")
        raise failure

    monkeypatch.setattr(agentgen.lifecycle, "_copier_update", half_done)
    with pytest.raises(type(failure)):
        update(repo)
    after = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts}
    assert after == before
    assert git(repo, "status", "--porcelain") == ""


@pytest.mark.parametrize("failure", [KeyboardInterrupt(), RuntimeError("injected")])
def test_a_failed_update_in_a_monorepo_touches_nothing_outside_the_project(tmp_path, history,
                                                                         monkeypatch, failure):
    """The project is a folder of a larger repository with uncommitted work beside it (a sibling's
    edited, staged and untracked files, an ignored file in the project): a failed update restores
    the project alone and every other byte stays as it was (once, `git reset --hard` lost them)."""
    import agentgen.lifecycle
    from agentgen.history import template_at

    history()
    mono = tmp_path / "mono"
    project = mono / "services" / "agent"
    with template_at("v1.0.0") as template:
        render(load_spec(ANSWERS), project, template=template, version="v1.0.0")
    (mono / "web").mkdir()
    (mono / "web" / "app.js").write_text("v1\n")
    (mono / "web" / "staged.js").write_text("v1\n")
    (mono / ".gitignore").write_text("*.local\n")
    git(mono, "init", "--quiet", "--initial-branch=main")
    commit_all(mono, "monorepo")
    (mono / "web" / "app.js").write_text("uncommitted edit\n")
    (mono / "web" / "staged.js").write_text("staged edit\n")
    git(mono, "add", "web/staged.js")
    (mono / "web" / "untracked.js").write_text("new, untracked\n")
    (project / "settings.local").write_text("ignored, the user's\n")
    index_before = git(mono, "diff", "--cached", "--name-status")

    def files() -> dict[str, bytes]:
        return {p.relative_to(mono).as_posix(): p.read_bytes() for p in mono.rglob("*")
                if p.is_file() and ".git" not in p.relative_to(mono).parts}

    before = files()

    def half_done(root, data, target):
        (root / "Dockerfile").write_text("half-written\n")
        (root / "new-file.txt").write_text("new\n")
        (root / "settings.local").write_text("overwritten\n")
        (root / "other.local").write_text("created, ignored\n")
        git(mono, "add", "--force", "services/agent/Dockerfile", "services/agent/new-file.txt")
        raise failure

    monkeypatch.setattr(agentgen.lifecycle, "_copier_update", half_done)
    with pytest.raises(type(failure)):
        update(project)
    assert files() == before
    assert git(mono, "diff", "--cached", "--name-status") == index_before  # the staged edit too
    assert git(mono, "status", "--porcelain", "--", "services") == ""


def test_init_project_round_trip_update_conflict_accept_check(tmp_path, history):
    """A project adopted with `agentgen init`: update to v2 conflicts in an owned file, the user
    resolves and accepts, check is clean; the user's own files are never touched by the update;
    a later edit of an owned file is drift until accepted."""
    from agentgen.adopt import adopt, load_init_spec

    from .test_init import snapshot, user_project

    deployment_doc = "{% if mode == 'init' %}deployment.md{% endif %}.jinja"

    def v2(template: Path) -> None:
        edit(template / "project" / "Dockerfile.jinja", "ENTRYPOINT", "# v2 says\nENTRYPOINT")
        edit(template / "project" / "docs" / deployment_doc, "## Run it locally", "## Run it (v2)")
        edit(template / "project" / "README.md.jinja", "## ", "## (v2) ")  # new projects only

    history(v2)
    project = user_project(tmp_path, "src-layout")
    theirs = {path: data for path, data in snapshot(project).items() if not path.startswith(".git/")}
    spec, _ = load_init_spec(project, {}, None)
    adopt(spec, project, template_version="v1.0.0")
    commit_all(project, "deployment by agentgen")
    edit(project / "Dockerfile", "ENTRYPOINT", "# we say\nENTRYPOINT")
    commit_all(project, "ours")

    runner = CliRunner()
    result = runner.invoke(app, ["update", str(project)])
    assert result.exit_code == 1 and "agentgen accept Dockerfile" in result.output, result.output
    assert "## Run it (v2)" in (project / "docs" / "deployment.md").read_text()
    now = snapshot(project)
    assert {path: now[path] for path in theirs} == theirs  # README.md, pyproject.toml, Makefile, ...
    text = (project / "Dockerfile").read_text()
    assert "<<<<<<< yours\n# we say\n=======\n# v2 says\n>>>>>>> template v2.0.0\n" in text
    (project / "Dockerfile").write_text("\n".join(
        line for line in text.splitlines() if not line.startswith(("<<<<<<<", "=======", ">>>>>>>"))) + "\n")
    assert runner.invoke(app, ["check", str(project)]).exit_code == 1
    assert runner.invoke(app, ["accept", "-C", str(project), "Dockerfile"]).exit_code == 0
    assert runner.invoke(app, ["check", str(project)]).exit_code == 0
    commit_all(project, "updated to v2")

    edit(project / "compose.yaml", "restart: unless-stopped", "restart: always")
    drift = runner.invoke(app, ["check", str(project)])
    assert drift.exit_code == 1 and "compose.yaml" in drift.output, drift.output
    assert runner.invoke(app, ["accept", "-C", str(project), "compose.yaml"]).exit_code == 0
    assert runner.invoke(app, ["check", str(project)]).exit_code == 0
