"""The library's entry points: prompt/answers -> spec -> render -> validate -> write -> report."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import ValidationFailedError
from .history import installed_version, template_at
from .render import render, user_owned
from .spec import Spec, load_spec
from .validate import Report, iter_files, validate_tree, validator_process
from .write import check_destination, git_init_commit, place, staging_dir


@dataclass
class Result:
    """What `generate` did: the files (relative to dest) and the validation report."""

    dest: Path
    files: list[Path]
    report: Report
    written: bool
    committed: bool = False


def generate(
    spec: Spec | Mapping[str, Any],
    dest: Path | str,
    *,
    force: bool = False,
    git: bool = True,
    dry_run: bool = False,
    template_version: str | None = None,
) -> Result:
    """Render `spec`, validate every artifact, then write it into `dest` atomically.

    With `force`, a non-empty `dest` keeps every file the template does not own. With `git`, a new
    repository gets an initial commit (an existing repository is left for the user to commit).
    `dry_run` renders and validates but writes nothing. `template_version` renders an earlier (or
    later) template release from the installed history instead of the installed template. Files the
    user owns once generated (the template's `_skip_if_exists`, e.g. the graph) are not replaced.

    Raises:
        SpecError: the answers are invalid (when given as a mapping).
        DestinationError: dest cannot take the project.
        ValidationFailedError: a generated artifact failed validation; nothing was written.
        GitError: the initial commit failed; nothing was written.
    """
    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    dest = Path(dest)
    check_destination(dest, force=force)
    with staging_dir(dest) as scratch, validator_process() as validate_in_worker, \
            template_at(template_version or installed_version()) as template:
        tree = scratch / "tree"
        render(spec, tree, template=template, version=template_version)
        report = validate_in_worker(tree)
        if not report.ok:
            raise ValidationFailedError(report.errors)
        if dest.is_dir():
            _keep_user_files(spec, template, tree, dest)
        files = [Path(p) for p in iter_files(tree)]
        if dry_run:
            return Result(dest, files, report, written=False)
        new_repo = git and not (dest / ".git").exists()
        if new_repo:
            git_init_commit(tree, f"Initial commit from agentgen {__version__}")
        files = place(tree, dest, scratch=scratch)
    return Result(dest, files, report, written=True, committed=new_repo)


def _keep_user_files(spec: Spec, template: Path, tree: Path, dest: Path) -> None:
    """Drop from `tree` the user-owned files `dest` already has, so writing keeps them."""
    owned_by_user = user_owned(spec, template)
    for rel in list(iter_files(tree)):
        if owned_by_user(rel.as_posix()) and (dest / rel).exists():
            (tree / rel).unlink()


def validate(root: Path | str) -> Report:
    """Run every validator on an existing project directory (not on its `.venv`, `.git`,
    `node_modules`, caches or what git ignores)."""
    return validate_tree(Path(root), project=True)
