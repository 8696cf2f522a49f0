"""`agentgen update` and `agentgen check` on a `large` Helm repository, next to copier's own update of
the same repository and a bare `copier copy` of the same answers (peers measured in the same run;
these machines are noisy: compare, don't trust absolute numbers).

Targets (issue #5): update <= 3 s, check <= 1 s.

The template history is built here as a release does: the current templates tagged v1.0.0, a changed
copy tagged v2.0.0 (AGENTGEN_TEMPLATE_HISTORY points agentgen at it; copier gets the same repository
through a url.insteadOf redirect of the recorded _src_path).

Run: .venv/bin/python benchmarks/lifecycle.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "src"))

from agentgen.history import HISTORY_ENV, PUBLIC_SOURCE, template_at  # noqa: E402
from agentgen.render import render  # noqa: E402
from agentgen.spec import load_spec  # noqa: E402

ANSWERS = {"name": "bench", "scale": "large", "targets": ["helm"], "secrets": "vault"}
IDENTITY = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com",
            "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.com"}


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def commit_all(repo: Path, message: str, tag: str | None = None) -> None:
    git(repo, "add", "--all", "--force")
    git(repo, "commit", "--quiet", "-m", message)
    if tag:
        git(repo, "tag", tag)


def build_history(work: Path) -> Path:
    repo = work / "history"
    shutil.copytree(ROOT / "templates", repo, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    git(repo, "init", "--quiet")
    commit_all(repo, "v1", "v1.0.0")
    readme = repo / "project" / "README.md.jinja"
    readme.write_text(readme.read_text().replace("## ", "## (v2) ", 1))
    (repo / "project" / "docs" / "upgrading.md").write_text("# Upgrading\n")
    commit_all(repo, "v2", "v2.0.0")
    return repo


def timed(cmd: list[str], runs: int, env: dict[str, str], before=None, ok=(0,)) -> list[float]:
    times = []
    for _ in range(runs):
        if before:
            before()
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        if proc.returncode not in ok:
            sys.exit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-500:]}")
    return times


def row(label: str, times: list[float]) -> float:
    median = statistics.median(times)
    print(f"  {label:<40} median {median:6.3f} s   min {min(times):6.3f} s")
    return median


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agentgen-bench-lifecycle-"))
    env = {**os.environ, **IDENTITY}
    os.environ.update(IDENTITY)
    try:
        history = build_history(work)
        os.environ[HISTORY_ENV] = str(history)
        env[HISTORY_ENV] = str(history)
        project = work / "project"
        with template_at("v1.0.0") as template:
            render(load_spec(ANSWERS), project, template=template, version="v1.0.0")
        git(project, "init", "--quiet")
        commit_all(project, "generated")
        files = sum(1 for p in project.rglob("*") if p.is_file() and ".git" not in p.parts)
        print(f"large helm repository at v1.0.0: {files} files")
        clone = work / "clone"

        def fresh_clone() -> None:
            shutil.rmtree(clone, ignore_errors=True)
            git(work, "clone", "--quiet", str(project), str(clone))

        copier_env = {**env, "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.{history}.insteadOf",
                      "GIT_CONFIG_VALUE_0": PUBLIC_SOURCE, "COPIER_CACHE_DIR": str(work / "cache")}
        print("update v1.0.0 -> v2.0.0")
        peer = row("copier update", timed([str(BIN / "copier"), "update", "--defaults", "--quiet",
                                           str(clone)], args.runs, copier_env, fresh_clone))
        ours = row("agentgen update", timed([str(BIN / "agentgen"), "update", str(clone)],
                                            args.runs, env, fresh_clone))
        print(f"  => agentgen update {ours:.3f} s (target <= 3 s), {ours / peer:.2f}x copier update")

        print("check (clean repository at its recorded version)")
        answers = work / "answers.yml"
        answers.write_text("".join(f"{k}: {v}\n" for k, v in ANSWERS.items()))
        out = work / "copy"
        peer = row("copier copy (same answers)", timed(
            [str(BIN / "copier"), "copy", "--defaults", "--quiet", "--data-file", str(answers),
             str(ROOT / "templates"), str(out)], args.runs, env,
            lambda: shutil.rmtree(out, ignore_errors=True)))
        ours = row("agentgen check", timed([str(BIN / "agentgen"), "check", str(project)],
                                           args.runs, env, ok=(2,)))
        print(f"  => agentgen check {ours:.3f} s (target <= 1 s), {ours / peer:.2f}x copier copy")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
