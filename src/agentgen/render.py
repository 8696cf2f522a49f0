"""Render phase: the copier template, fed the spec's answers, into a directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from ._resources import template_dir
from .errors import UserError
from .history import PUBLIC_SOURCE, installed_version
from .spec import Spec


def render(spec: Spec, out_dir: Path, *, template: Path | None = None, version: str | None = None,
           src_path: str = PUBLIC_SOURCE) -> None:
    """Render the project for `spec` into `out_dir` (created; expected not to exist or be empty).

    `template` is a template directory (default: the installed one) of release `version` (default: the
    installed version); the answers file records `src_path` and `version` as `_src_path`/`_commit`,
    as copier does when it renders that release from the template's git repository.

    Raises:
        UserError: copier refused an answer (the spec and copier.yml disagree) or the template.
    """
    import copier
    from copier.errors import CopierError

    release = {"_src_path": src_path, "_commit": version or installed_version()}
    try:
        copier.run_copy(
            str(template or template_dir()),
            out_dir,
            data={**spec.to_answers(), "agentgen_release": release},
            defaults=True,
            overwrite=True,
            quiet=True,
            unsafe=False,
            cleanup_on_error=False,
        )
    except (CopierError, ValueError) as exc:
        raise UserError(f"template rendering failed: {exc}") from exc


def user_owned(spec: Spec, template: Path | None = None) -> Callable[[str], bool]:
    """A predicate on project-relative POSIX paths: True for files the user owns once generated.

    They are the template's `_skip_if_exists` patterns (gitignore-style, rendered with the answers):
    updates never touch them and `agentgen check` ignores them.
    """
    import jinja2
    import pathspec

    text = (template or template_dir()).joinpath("copier.yml").read_text(encoding="utf-8")
    config = next(yaml.load_all(text, Loader=_IgnoreIncludes)) or {}
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    answers = spec.to_answers()
    patterns = [env.from_string(p).render(answers) for p in config.get("_skip_if_exists", [])]
    return pathspec.GitIgnoreSpec.from_lines(patterns).match_file


class _IgnoreIncludes(yaml.SafeLoader):
    """Reads copier.yml's settings; its `!include` (the presets data) is irrelevant here."""


_IgnoreIncludes.add_constructor("!include", lambda loader, node: None)
