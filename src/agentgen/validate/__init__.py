"""Validate phase: one module per artifact kind, run over a rendered tree.

Each module has `NAME`, `matches(rel_path) -> bool` and `check(path, ctx) -> list[Finding]`.
A tool that is not installed yields a `skipped` finding naming its install command: never a pass.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from ._base import Context, Finding, Level, Report, Validator, finding, skipped, tool_missing

__all__ = ["Context", "Finding", "Level", "Report", "Validator", "finding", "iter_files", "skipped",
           "tool_missing", "validate_tree", "validator_process", "warm_up"]


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
