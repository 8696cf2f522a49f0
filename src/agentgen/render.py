"""Render phase: the copier template, fed the spec's answers, into a directory."""

from __future__ import annotations

from pathlib import Path

from ._resources import template_dir
from .errors import UserError
from .spec import Spec


def render(spec: Spec, out_dir: Path) -> None:
    """Render the project for `spec` into `out_dir` (created; expected not to exist or be empty).

    Raises:
        UserError: copier refused an answer (the spec and copier.yml disagree) or the template.
    """
    import copier
    from copier.errors import CopierError

    try:
        copier.run_copy(
            str(template_dir()),
            out_dir,
            data=spec.to_answers(),
            defaults=True,
            overwrite=True,
            quiet=True,
            unsafe=False,
            cleanup_on_error=False,
        )
    except (CopierError, ValueError) as exc:
        raise UserError(f"template rendering failed: {exc}") from exc
