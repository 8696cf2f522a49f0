"""Report phase: what was (or would be) written, what was checked, and what to do next."""

from __future__ import annotations

import shlex
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from .adopt import AdoptResult
from .api import Result
from .lifecycle import CheckResult, UpdateResult
from .spec import Spec
from .validate import Report


def file_tree(root_label: str, files: list[Path]) -> Tree:
    tree = Tree(f"[bold]{root_label}[/]")
    nodes: dict[Path, Tree] = {}
    for rel in sorted(files):
        parent = tree
        for depth in range(1, len(rel.parts)):
            key = Path(*rel.parts[:depth])
            if key not in nodes:
                nodes[key] = parent.add(f"[blue]{rel.parts[depth - 1]}/[/]")
            parent = nodes[key]
        parent.add(rel.name)
    return tree


def print_checks(console: Console, report: Report) -> None:
    checked = ", ".join(f"{name} ({count})" for name, count in sorted(report.checked.items()))
    console.print(f"[green]Validated:[/] {checked}", soft_wrap=True)
    for skipped in report.skipped:
        console.print(f"[yellow]{escape(str(skipped))}[/]")
    for note in report.notes:
        console.print(f"[cyan]{escape(str(note))}[/]", soft_wrap=True)


def print_result(console: Console, spec: Spec, result: Result) -> None:
    verb = "Would write" if not result.written else "Wrote"
    console.print(file_tree(str(result.dest), result.files))
    print_checks(console, result.report)
    console.print(f"[bold green]{verb} {len(result.files)} files[/] to {result.dest}"
                  + (" (initial commit created)" if result.committed else ""), soft_wrap=True)
    if not result.written:
        return
    steps = _cd(result.dest)
    if "compose" in spec.targets:
        steps += ["./scripts/init-secrets.sh", "docker compose up --build"]
    steps.append("less README.md  # configuration, deployment, operations")
    console.print("[bold]Next steps:[/]\n" + "\n".join(f"  {s}" for s in steps))


def _cd(directory: Path) -> list[str]:
    """`cd DIR` as a next step, unless DIR is where the user already is."""
    try:
        here = Path(directory).resolve() == Path.cwd().resolve()
    except OSError:
        here = False
    return [] if here else [f"cd {shlex.quote(str(directory))}"]


def print_adopt(console: Console, spec: Spec, result: AdoptResult) -> None:
    verb = "Would add" if not result.written else "Added"
    console.print(file_tree(str(result.root), result.files))
    print_checks(console, result.report)
    for rel in result.moved:
        console.print(f"[yellow]{'Would move' if not result.written else 'Moved'}[/] your "
                      f"{escape(rel.as_posix())} aside to {escape(rel.as_posix())}.orig", soft_wrap=True)
    console.print(f"[bold green]{verb} {len(result.files)} files[/] to {result.root} "
                  "(none of yours changed)", soft_wrap=True)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    if not spec.own_dockerignore:
        console.print("[yellow]note:[/] the image copies the project as your .dockerignore leaves "
                      "it: make sure it excludes .env, secrets/, .venv and .git", soft_wrap=True)
    if not result.written:
        return
    steps = [*_cd(result.root), "make -f agentgen.mk install graphs"]
    if "compose" in spec.targets:
        steps += ["./scripts/init-secrets.sh", "docker compose up --build"]
    steps += ["less docs/deployment.md  # what agentgen owns, configuration, operations",
              "git add -A && git commit -m 'Deployment by agentgen'"]
    console.print("[bold]Next steps:[/]\n" + "\n".join(f"  {s}" for s in steps))


_CHANGE_STYLES = {"A": "green", "M": "yellow", "D": "red", "U": "bold red"}


def print_update(console: Console, result: UpdateResult) -> None:
    if not result.changes:
        console.print(f"{result.root} is at template {result.to_version}: nothing to update")
        return
    console.print(f"[bold]Updated {result.root}[/] from template {result.from_version} to "
                  f"{result.to_version}: {len(result.changes)} path(s) changed", soft_wrap=True)
    for letter, path in result.changes:
        console.print(f"  [{_CHANGE_STYLES[letter]}]{letter}[/] {escape(path)}", soft_wrap=True)
    for old, new in result.carried:
        console.print(f"[cyan]Moved your edits[/] of {escape(old)} (removed by the template) "
                      f"into {escape(new)}", soft_wrap=True)
    for conflict in result.conflicts:
        console.print(f"[bold red]conflict:[/] {escape(conflict.path)}: {escape(conflict.reason)}",
                      soft_wrap=True)
    if result.conflicts:
        names = " ".join(sorted({c.path for c in result.conflicts}))
        console.print(f"[bold red]{len(result.conflicts)} conflicted file(s)[/]: resolve them, then "
                      f"agentgen accept {escape(names)} (so that agentgen check takes them as "
                      "they are) and git add -A && git commit", soft_wrap=True)
    else:
        console.print("Review with git diff, run agentgen validate, then git add -A && git commit")


def print_check(console: Console, result: CheckResult) -> None:
    for drift in result.drift:
        console.print(escape(drift.diff), end="", soft_wrap=True, highlight=False)
    status = result.status
    if status == "drift":
        names = ", ".join(d.path for d in result.drift)
        console.print(f"[bold red]drift:[/] {len(result.drift)} of {result.compared} template-owned "
                      f"file(s) differ from template {result.version}: {escape(names)} "
                      "(restore them, change the answers and run agentgen update, or keep them "
                      f"with agentgen accept {escape(' '.join(d.path for d in result.drift))})",
                      soft_wrap=True)
    elif status == "outdated":
        console.print(f"[yellow]outdated:[/] no drift from template {result.version}, but "
                      f"{result.latest} is available: agentgen update --to {result.latest}")
    else:
        accepted = f" ({len(result.accepted)} as accepted)" if result.accepted else ""
        console.print(f"[green]clean:[/] {result.compared} template-owned files match template "
                      f"{result.version}{accepted}")
