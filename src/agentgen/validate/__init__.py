"""Validate phase: one module per artifact kind, run over a rendered tree.

Each module has `NAME`, `matches(rel_path) -> bool` and `check(path, ctx) -> list[Finding]`.
A tool that is not installed yields a `skipped` finding naming its install command: never a pass.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import yaml


class Level(StrEnum):
    ERROR = "error"
    SKIPPED = "skipped"
    NOTE = "note"  # about a file the user owns: reported, never a failure


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    validator: str
    message: str
    level: Level = Level.ERROR

    def __str__(self) -> str:
        prefix = {Level.SKIPPED: "skipped: ", Level.NOTE: "note (your file): "}.get(self.level, "")
        return f"{self.path}: [{self.validator}] {prefix}{self.message}"


@dataclass
class Context:
    """What validators may know about the tree besides a file: its root, recorded answers, and
    renders other validators already made (kustomize, helm), so that each is made once."""

    root: Path
    renders: dict[str, Any] = field(default_factory=dict)
    _pool: Any = None

    def started(self, key: str, work: Callable[[], Any]) -> Any:
        """The result of `work`, run once per key on a thread of this context's pool: validators
        `prefetch` the external tools' runs (kustomize, helm) so they run side by side, and every
        validator that needs one waits for the same run."""
        if key not in self.renders:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2),
                                                thread_name_prefix="agentgen-validate")
            self.renders[key] = self._pool.submit(work)
        return self.renders[key]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    @cached_property
    def answers(self) -> dict[str, Any]:
        path = self.root / ".copier-answers.yml"
        if not path.is_file():
            return {}
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}


class Validator(Protocol):
    """A file validator (`matches` + `check`), or a tree validator (`check_tree`, run once)."""

    NAME: str

    def matches(self, rel: PurePosixPath) -> bool: ...

    def check(self, path: Path, ctx: Context) -> list[Finding]: ...


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level is Level.ERROR]

    @property
    def skipped(self) -> list[Finding]:
        return [f for f in self.findings if f.level is Level.SKIPPED]

    @property
    def notes(self) -> list[Finding]:
        return [f for f in self.findings if f.level is Level.NOTE]

    def judged_for(self, ours: Callable[[str], bool]) -> Report:
        """This report with the errors about files that are not agentgen's (`ours` says which)
        turned into notes: the user's own workflows, prompts and code never fail agentgen."""
        def judged(finding: Finding) -> Finding:
            if finding.level is Level.ERROR and finding.path != "*" \
                    and not finding.path.startswith("(rendered)") and not ours(finding.path):
                return Finding(finding.path, finding.validator, finding.message, Level.NOTE)
            return finding

        return Report([judged(f) for f in self.findings], self.checked)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> str:
        return json.dumps({"findings": [asdict(f) for f in self.findings], "checked": self.checked})

    @classmethod
    def from_json(cls, text: str) -> Report:
        data = json.loads(text)
        findings = [Finding(f["path"], f["validator"], f["message"], Level(f["level"]))
                    for f in data["findings"]]
        return cls(findings, data["checked"])


def _validators() -> list[Validator]:
    from . import (
        checkov,
        compose,
        dockerfile,
        helm,
        kubernetes,
        langgraph,
        leftovers,
        pyproject,
        syntax,
        workflows,
    )

    return [syntax, leftovers, compose, workflows, dockerfile, langgraph,  # type: ignore[list-item]
            pyproject, kubernetes, helm, checkov]


# Directories that are never a project's artifacts: environments, caches, dependencies.
SKIPPED_DIRS = frozenset({".git", ".venv", "venv", "node_modules", "__pycache__", ".mypy_cache",
                          ".pytest_cache", ".ruff_cache", ".tox", ".nox"})


def iter_files(root: Path, *, project: bool = False) -> Iterable[PurePosixPath]:
    """Every file under root but `.git`, relative, sorted. A `project` (a user's checkout, not a
    render) also skips SKIPPED_DIRS and, in a git work tree, what git ignores: its `.venv`, caches
    and local files are not its artifacts. Never what is not a regular file inside root (a symlink
    out of the project is not read, a FIFO would block the read)."""
    from .._confine import is_regular_file, leads_outside

    ignored = _git_ignored(root) if project else set()
    skipped = SKIPPED_DIRS if project else {".git"}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else f"{rel_dir}/"
        dirnames[:] = sorted(d for d in dirnames
                             if d not in skipped and f"{prefix}{d}/" not in ignored)
        for name in sorted(filenames):
            rel = f"{prefix}{name}"
            if rel not in ignored and is_regular_file(root / rel) and leads_outside(root, rel) is None:
                yield PurePosixPath(rel)


def _git_ignored(root: Path) -> set[str]:
    """Paths under root that git ignores (directories end with '/'), when root is in a work tree."""
    import shutil
    import subprocess

    if shutil.which("git") is None:
        return set()
    proc = subprocess.run(["git", "ls-files", "-z", "--others", "--ignored", "--exclude-standard",
                           "--directory", "--", "."], cwd=root, capture_output=True, check=False)
    if proc.returncode != 0:  # not a git work tree
        return set()
    return {p for p in proc.stdout.decode(errors="surrogateescape").split("\0") if p}


def validate_tree(root: Path, exclude: Iterable[str] = (), *, project: bool = False) -> Report:
    """Run every validator (but those NAMEd in `exclude`) on every file it matches under `root`
    (a `project`: a user's checkout, see iter_files)."""
    ctx = Context(root)
    try:
        return _validate(ctx, set(exclude), project)
    finally:
        ctx.close()


def _validate(ctx: Context, excluded: set[str], project: bool = False) -> Report:
    root = ctx.root
    report = Report()
    files = list(iter_files(root, project=project))
    validators = [v for v in _validators() if v.NAME not in excluded]
    # Imported before the prefetches start threads: a package two threads import at once can be
    # handed half-initialised to one of them (jsonschema's circular imports: an ImportError).
    import jsonschema.validators  # noqa: F401
    for validator in validators:
        prefetch = getattr(validator, "prefetch", None)
        if prefetch is not None:
            prefetch(ctx, files)
    for validator in validators:
        check_tree = getattr(validator, "check_tree", None)
        if check_tree is not None:
            findings, count = check_tree(ctx, files)
            if count:
                report.checked[validator.NAME] = count
            report.findings.extend(findings)
            continue
        for rel in files:
            if validator.matches(rel):
                report.checked[validator.NAME] = report.checked.get(validator.NAME, 0) + 1
                report.findings.extend(validator.check(root / rel, ctx))
    # A missing tool is reported once, not once per file.
    report.findings = sorted(set(report.findings))
    return report


def finding(ctx: Context, path: Path, validator: str, message: str,
            level: Level = Level.ERROR) -> Finding:
    return Finding(path.relative_to(ctx.root).as_posix(), validator, message, level)


def skipped(validator: str, reason: str) -> Finding:
    """A check that could not run: reported, never counted as passed."""
    return Finding("*", validator, reason, Level.SKIPPED)


def tool_missing(validator: str, tool: str, install: str) -> Finding:
    return skipped(validator, f"{tool} is not installed ({install})")


def warm_up() -> None:
    """Import every validator and build its schemas (what costs time, not the checks themselves)."""
    for validator in _validators():
        prepare = getattr(validator, "prepare", None)
        if prepare is not None:
            prepare()


@contextmanager
def validator_process() -> Iterator[Callable[[Path], Report]]:
    """A worker process (`python -m agentgen.validate._worker`) that warms the validators up while
    the caller renders, on another core, then validates the rendered tree:
    `with validator_process() as run: ...render...; report = run(tree)`."""
    import subprocess
    import sys

    worker = subprocess.Popen([sys.executable, "-m", "agentgen.validate._worker"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(root: Path) -> Report:
        out, _ = worker.communicate(f"{root}\n")
        if worker.returncode != 0:
            raise RuntimeError(f"validator worker failed with exit code {worker.returncode}")
        return Report.from_json(out)

    try:
        yield run
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
