"""agentgen reads and writes only inside the project: every path is checked with its symlinks
resolved before it is read, written, compared or restored."""

from __future__ import annotations

import stat
from pathlib import Path, PurePath

from .errors import OutsideProjectError


def leads_outside(root: Path, rel: str | PurePath) -> Path | None:
    """Where `root/rel` really is when that is outside root (a symlink on the way, or in rel
    itself, leads out; `..` in rel), else None."""
    base = root.resolve()
    resolved = (base / rel).resolve()
    return None if resolved == base or base in resolved.parents else resolved


def confined(root: Path, rel: str | PurePath) -> Path:
    """root/rel, checked to stay inside root once symlinks are resolved.

    Raises:
        OutsideProjectError: naming the path and where it leads.
    """
    outside = leads_outside(root, rel)
    if outside is not None:
        raise OutsideProjectError(f"{PurePath(rel).as_posix()}: leads outside the project "
                                  f"{root.resolve()} (to {outside}) through a symlink or '..'; "
                                  "agentgen reads and writes only inside it")
    return root / rel


def writable_parent(root: Path, rel: str | PurePath) -> Path:
    """root/rel for writing: its directory must stay inside root (the file itself may be a
    symlink agentgen replaces, never follows).

    Raises:
        OutsideProjectError: the directory leads outside root.
    """
    outside = leads_outside(root, PurePath(rel).parent)
    if outside is not None:
        raise OutsideProjectError(f"{PurePath(rel).as_posix()}: its directory leads outside the "
                                  f"project {root.resolve()} (to {outside}) through a symlink; "
                                  "agentgen writes only inside it; nothing was written")
    return root / rel


def is_regular_file(path: Path) -> bool:
    """A regular file (not a FIFO, socket or device, which would block or never end a read)."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def read_confined(root: Path, rel: str | PurePath) -> bytes | None:
    """The bytes of root/rel when it is a regular file inside root (symlinks resolved), None when
    it does not exist.

    Raises:
        OutsideProjectError: it leads outside root, or is not a regular file.
    """
    path = confined(root, rel)
    if not path.exists():
        return None
    if not is_regular_file(path):
        raise OutsideProjectError(f"{PurePath(rel).as_posix()}: not a regular file")
    return path.read_bytes()
