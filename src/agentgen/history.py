"""The template's released versions, and a git source copier can update from without a network.

Every generated repository records `_src_path` = `PUBLIC_SOURCE` (the template repository published
from agentgen's release tags, so plain `copier update` works wherever it is reachable) and
`_commit` = the release tag of the template that rendered it (`v<agentgen version>`).

The installed package carries the template's released history as a git bundle
(`template-history.bundle`, built by `build_history` from the agentgen repository's `v*` tags when the
wheel is built). `template_repository` turns it, plus the installed template, into a throwaway git
repository; `redirect_source` points the recorded `_src_path` at it with git's `url.<base>.insteadOf`,
so copier's own update (which clones `_src_path` at two tags) runs offline.

`AGENTGEN_TEMPLATE_HISTORY` names another history (a bundle or a git repository whose root is the
template, tagged `vX.Y.Z`): a mirror inside a company, or a test's.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ._git import git
from ._resources import template_dir
from ._version import __version__
from .errors import UserError

PUBLIC_SOURCE = "https://github.com/agentgen/agentgen-template.git"
HISTORY_ENV = "AGENTGEN_TEMPLATE_HISTORY"
BUNDLE_NAME = "template-history.bundle"
_IDENTITY = {
    "GIT_AUTHOR_NAME": "agentgen", "GIT_AUTHOR_EMAIL": "agentgen@localhost",
    "GIT_COMMITTER_NAME": "agentgen", "GIT_COMMITTER_EMAIL": "agentgen@localhost",
}


class HistoryError(UserError):
    """A template version is unknown, or the template history cannot be read."""


def installed_version() -> str:
    """The tag of the template inside this installation."""
    return f"v{__version__}"


def version_key(tag: str) -> tuple[int, ...] | None:
    """`v1.2.3` -> (1, 2, 3); None for a tag that is not a release version."""
    from packaging.version import InvalidVersion, Version

    if not tag.startswith("v"):
        return None
    try:
        return Version(tag[1:]).release
    except InvalidVersion:
        return None


def _git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    return git(*args, cwd=cwd, env=env, error=HistoryError)


def history_source() -> Path | None:
    """Where released template versions come from: $AGENTGEN_TEMPLATE_HISTORY or the packaged bundle."""
    configured = os.environ.get(HISTORY_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not path.exists():
            raise HistoryError(f"{HISTORY_ENV}={configured}: no such bundle or repository")
        return path.resolve()
    packaged = Path(__file__).with_name(BUNDLE_NAME)
    return packaged if packaged.is_file() else None


@dataclass(frozen=True)
class Versions:
    """The template versions this installation can render: the released history and its own."""

    source: Path | None

    @cached_property
    def released(self) -> tuple[str, ...]:
        if self.source is None:
            return ()
        refs = _git("ls-remote", "--tags", "--refs", str(self.source)).split()
        tags = [ref.removeprefix("refs/tags/") for ref in refs[1::2]]
        return tuple(sorted((t for t in tags if version_key(t) is not None), key=version_key))

    @property
    def installed(self) -> str:
        return installed_version()

    @property
    def all(self) -> tuple[str, ...]:
        return tuple(sorted({*self.released, self.installed}, key=version_key))

    @property
    def latest(self) -> str:
        return self.all[-1]

    def require(self, tag: str) -> str:
        if tag not in self.all:
            raise HistoryError(f"template version {tag} is unknown to agentgen {__version__} "
                               f"(it knows: {', '.join(self.all)}); upgrade agentgen")
        return tag


def known_versions() -> Versions:
    return Versions(history_source())


def _commit_directory(repo: Path, directory: Path, tag: str) -> None:
    """Commit `directory`'s files (not caches) as a root commit tagged `tag` in `repo`."""
    env = {**_IDENTITY, "GIT_INDEX_FILE": str(repo / ".git" / f"index-{tag}")}
    _git("--git-dir", str(repo / ".git"), "--work-tree", str(directory), "add", "--all", "--force",
         "--", ".", ":(exclude,glob)**/__pycache__/**", ":(exclude,glob)**/*.pyc", env=env)
    tree = _git("--git-dir", str(repo / ".git"), "write-tree", env=env).strip()
    commit = _git("commit-tree", tree, "-m", f"agentgen template {tag}", cwd=repo, env=env).strip()
    _git("tag", tag, commit, cwd=repo)


@contextmanager
def template_repository(tags: Iterable[str], versions: Versions | None = None) -> Iterator[Path]:
    """A throwaway git repository whose tags are the template at `tags`.

    The installed version is the installed template directory (what `agentgen new` renders); every
    other version comes from the history.
    """
    versions = versions or known_versions()
    with tempfile.TemporaryDirectory(prefix="agentgen-template-") as tmp:
        repo = Path(tmp)
        _git("init", "--quiet", str(repo))
        for tag in dict.fromkeys(versions.require(t) for t in tags):
            if tag == versions.installed:
                _commit_directory(repo, template_dir(), tag)
            else:
                assert versions.source is not None  # require() found it in the history
                _git("fetch", "--quiet", "--no-tags", str(versions.source),
                     f"refs/tags/{tag}:refs/tags/{tag}", cwd=repo)
        yield repo


@contextmanager
def template_at(tag: str, versions: Versions | None = None) -> Iterator[Path]:
    """The template directory (with copier.yml) of version `tag`."""
    versions = versions or known_versions()
    if versions.require(tag) == versions.installed:
        yield template_dir()
        return
    with template_repository([tag], versions) as repo, \
            tempfile.TemporaryDirectory(prefix="agentgen-template-tree-") as out:
        _git("--work-tree", out, "checkout", "--quiet", tag, "--", ".", cwd=repo)
        yield Path(out)


@contextmanager
def redirect_source(url: str, repo: Path) -> Iterator[None]:
    """Make git fetch `url` (a recorded `_src_path`) from the local `repo`, for copier's update.

    Uses git's `url.<base>.insteadOf` through GIT_CONFIG_* variables, in `os.environ` and in plumbum's
    environment (copier runs git through plumbum, which copies the environment when it is imported).
    Copier's mirror cache goes to a throwaway directory: a redirected mirror must not be reused.
    """
    from plumbum import local

    count = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)
    with tempfile.TemporaryDirectory(prefix="agentgen-copier-cache-") as cache:
        env = {
            "GIT_CONFIG_COUNT": str(count + 1),
            f"GIT_CONFIG_KEY_{count}": f"url.{repo}.insteadOf",
            f"GIT_CONFIG_VALUE_{count}": url,
            "GIT_TERMINAL_PROMPT": "0",
            "COPIER_CACHE_DIR": cache,
        }
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            with local.env(**env):
                yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def build_history(checkout: Path, out: Path, *, subdirectory: str = "templates") -> list[str]:
    """Write a bundle of the template's released history from `checkout`'s `v*` tags.

    Each release tag `vX.Y.Z` becomes a commit whose root is `<tag>:templates` (copier needs
    copier.yml at the root), chained in version order, with the tag's date: the same tags always give
    the same commits, so every machine agrees on them. Returns the tags; writes nothing without tags.
    """
    tags = sorted((t for t in _git("tag", "--list", "v*", cwd=checkout).split()
                   if version_key(t) is not None), key=version_key)
    if not tags:
        return []
    with tempfile.TemporaryDirectory(prefix="agentgen-history-") as tmp:
        repo = Path(tmp)
        _git("init", "--quiet", "--bare", str(repo))
        objects = Path(_git("rev-parse", "--path-format=absolute", "--git-common-dir",
                            cwd=checkout).strip()) / "objects"
        (repo / "objects" / "info" / "alternates").write_text(f"{objects}\n")
        parent: list[str] = []
        for tag in tags:
            tree = _git("rev-parse", f"{tag}^{{commit}}:{subdirectory}", cwd=checkout).strip()
            date = _git("log", "-1", "--format=%cI", f"{tag}^{{commit}}", cwd=checkout).strip()
            env = {**_IDENTITY, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
            commit = _git("commit-tree", tree, *parent, "-m", f"agentgen template {tag}",
                          cwd=repo, env=env).strip()
            _git("tag", tag, commit, cwd=repo)
            parent = ["-p", commit]
        out.parent.mkdir(parents=True, exist_ok=True)
        _git("bundle", "create", str(out.resolve()), "--tags", cwd=repo)
    return tags
