"""Write phase: move a rendered, validated tree into its destination, all or nothing.

A new (or empty) destination is one `rename` of a sibling staging directory. With `force` into a
non-empty destination, each owned file replaces its counterpart; the files it replaced are kept aside
until the end, so any failure (Ctrl-C included) puts every one of them back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._confine import writable_parent
from ._git import git
from .errors import DestinationError, GitError
from .validate import iter_files


def check_destination(dest: Path, *, force: bool) -> None:
    """Refuse a destination the project cannot go to, before any work is done.

    Raises:
        DestinationError: dest is a file, not empty (without force), a LangGraph project agentgen
            did not generate (even with force), or not writable.
    """
    if dest.is_symlink():
        raise DestinationError(f"{dest}: is a symlink; give the directory itself "
                               "(agentgen writes only where it was told, never through a link)")
    if dest.exists() and not dest.is_dir():
        raise DestinationError(f"{dest}: destination exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise DestinationError(
            f"{dest}: destination is not empty (use --force to replace the files agentgen owns)")
    if (dest / "langgraph.json").is_file() and not (dest / ".copier-answers.yml").is_file():
        raise DestinationError(
            f"{dest}: holds a LangGraph project agentgen did not generate (langgraph.json): new "
            f"would add the sample agent around it; run agentgen init {dest} to add the deployment "
            "to it in place")
    check_writable(dest)


def check_writable(dest: Path) -> None:
    """Refuse a destination (or the directory beside it where files are staged) that cannot be
    written, before any work is done.

    Raises:
        DestinationError: naming the directory.
    """
    # Really try: permission bits say nothing for root on a read-only or virtual file system.
    for directory in {dest if dest.is_dir() else _existing_ancestor(dest), _staging_base(dest)}:
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".agentgen-probe-", dir=directory))
        except OSError as exc:
            raise DestinationError(f"{directory}: directory is not writable "
                                   f"({exc.strerror or exc})") from None


def _existing_ancestor(path: Path) -> Path:
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise DestinationError(f"{parent}: exists and is not a directory")
            return parent
    raise DestinationError(f"{path}: no existing parent directory")


def _staging_base(dest: Path) -> Path:
    return dest.parent if dest.parent.is_dir() else _existing_ancestor(dest)


@contextmanager
def staging_dir(dest: Path) -> Iterator[Path]:
    """A scratch directory on dest's file system (so the final move is a rename), always removed."""
    path = Path(tempfile.mkdtemp(prefix=".agentgen-", dir=_staging_base(dest)))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def place(tree: Path, dest: Path, *, scratch: Path) -> list[Path]:
    """Move `tree` into `dest` atomically; return dest-relative paths of the files written."""
    files = [Path(p) for p in iter_files(tree)]
    if not dest.exists() or (dest.is_dir() and not any(dest.iterdir())):
        created = _make_parents(dest)
        try:
            os.replace(tree, dest)  # rename(2) also replaces an empty directory
        except BaseException:
            for directory in reversed(created):
                directory.rmdir()
            raise
        return files
    _merge(tree, dest, files, scratch / "replaced")
    return files


def _make_parents(dest: Path) -> list[Path]:
    created = []
    for parent in reversed(dest.absolute().parents):
        if not parent.exists():
            parent.mkdir()
            created.append(parent)
    return created


def _merge(tree: Path, dest: Path, files: list[Path], backup: Path) -> None:
    """Replace dest's copies of `files` with tree's, undoing everything on any failure. Every
    file's directory must stay inside dest (symlinks resolved), checked before anything moves.

    Raises:
        OutsideProjectError: a directory on the way is a symlink that leads outside dest.
    """
    for rel in files:
        writable_parent(dest, rel)
    moved: list[tuple[Path, Path | None]] = []  # (target, backup of what it replaced)
    new_dirs: list[Path] = []
    try:
        for rel in files:
            target = dest / rel
            for parent in reversed(rel.parents):
                directory = dest / parent
                if not directory.exists():
                    directory.mkdir()
                    new_dirs.append(directory)
                elif not directory.is_dir():
                    raise DestinationError(f"{directory}: exists and is not a directory")
            saved = None
            if target.is_dir() and not target.is_symlink():
                raise DestinationError(f"{target}: is a directory; the template owns a file there")
            if target.exists() or target.is_symlink():
                saved = backup / rel
                saved.parent.mkdir(parents=True, exist_ok=True)
                os.replace(target, saved)
            moved.append((target, saved))
            os.replace(tree / rel, target)
    except BaseException:
        for target, saved in reversed(moved):
            if saved is not None:
                os.replace(saved, target)
            elif target.exists():
                target.unlink()
        for directory in reversed(new_dirs):
            directory.rmdir()
        raise


def git_init_commit(tree: Path, message: str) -> None:
    """`git init` + one commit of everything in `tree`.

    Raises:
        GitError: git is missing or failed.
    """
    if shutil.which("git") is None:
        raise GitError("git is not installed (apt-get install git), or pass --no-git")
    git("init", "--quiet", "--initial-branch=main", cwd=tree)
    git("add", "--all", cwd=tree)
    configured = subprocess.run(["git", "config", "user.email"], cwd=tree, capture_output=True,
                                text=True, check=False).stdout.strip()
    # Without a configured identity git refuses to commit; sign as agentgen rather than fail.
    identity = () if configured else ("-c", "user.name=agentgen", "-c", "user.email=agentgen@localhost")
    git(*identity, "commit", "--quiet", "--no-verify", "-m", message, cwd=tree)
