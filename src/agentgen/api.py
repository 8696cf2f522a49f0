"""The library's entry points: prompt/answers -> spec -> render -> validate -> write -> report."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import FieldProblem, SpecError, ValidationFailedError
from .history import installed_version, template_at
from .render import render, user_owned
from .spec import Mode, Spec, load_spec
from .validate import Finding, Report, iter_files, validate_tree, validator_process
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
    if spec.mode is not Mode.NEW:
        raise SpecError([FieldProblem(
            "mode", f"{spec.mode.value!r} is what `agentgen init` records for a project it adopted; "
                    "`agentgen new` writes a new project around the sample agent (remove mode, or "
                    "run agentgen init DIR in your project)")])
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


def validate(root: Path | str, *, import_graphs: bool = False,
             python: Path | str | None = None) -> Report:
    """Run every validator on an existing project directory (not on its `.venv`, `.git`,
    `node_modules`, caches or what git ignores). With `import_graphs`, also import every graph of
    its langgraph.json in the project's environment (`python`, default: its `.venv`) as the runtime
    serving it does (`python -m agentgen_runtime graphs`).

    Raises:
        UserError: `import_graphs` and no such Python.
    """
    root = Path(root).absolute()  # langgraph-cli compares its paths with the config's, absolute
    report = validate_tree(root, project=True)
    owned = agentgen_paths(root)
    if owned is not None:  # a project agentgen manages: the user's own files never fail it
        report = report.judged_for(lambda path: path in owned)
    if import_graphs:
        report.findings = sorted(set(report.findings) | set(import_findings(root, python)))
        report.checked["import"] = 1
    return report


def agentgen_paths(root: Path) -> set[str] | None:
    """The paths agentgen owns in a project it manages (its recorded answers rendered afresh),
    plus langgraph.json (the graphs the deployment serves); None for a project it does not manage
    (every finding counts there)."""
    from .errors import UserError
    from .lifecycle import ANSWERS_FILE, fresh_render, read_recorded

    if not (root / ANSWERS_FILE).is_file():
        return None
    try:
        recorded = read_recorded(root)
        with fresh_render(recorded) as (_, owned):
            return set(owned) | {"langgraph.json"}
    except UserError:
        return None  # unreadable answers: judged as a plain project


def import_findings(root: Path, python: Path | str | None = None) -> list[Finding]:
    """One finding per graph of `root/langgraph.json` that does not import in the environment of
    `python` (default: root/.venv), or for the environment itself."""
    import subprocess

    from .errors import UserError

    # absolute, not resolved: a virtualenv's python is a symlink to the base interpreter
    python = (Path(python) if python is not None else root / ".venv" / "bin" / "python").absolute()
    if not python.is_file():
        raise UserError(f"--python: {python} does not exist (create the project's environment "
                        "with make install, or name its Python)")
    proc = subprocess.run([str(python), "-m", "agentgen_runtime", "graphs"], cwd=root,
                          capture_output=True, text=True, check=False, timeout=600,
                          env={k: v for k, v in os.environ.items() if k != "LANGGRAPH_CONFIG"})
    findings = []
    for line in proc.stdout.splitlines():
        if line.startswith("error "):
            graph, _, why = line[len("error "):].partition(": ")
            findings.append(Finding("langgraph.json", "import", f"graph {graph!r}: {why}"
                                    if graph != "langgraph.json" else why))
    if proc.returncode != 0 and not findings:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        findings.append(Finding("langgraph.json", "import", f"{python} -m agentgen_runtime graphs "
                                f"failed (is the runtime installed there?): {last}"))
    return findings
