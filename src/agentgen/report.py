"""Report phase: what was (or would be) written, what was checked, and what to do next."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from .api import Result
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


def print_result(console: Console, spec: Spec, result: Result) -> None:
    verb = "Would write" if not result.written else "Wrote"
    console.print(file_tree(str(result.dest), result.files))
    print_checks(console, result.report)
    console.print(f"[bold green]{verb} {len(result.files)} files[/] to {result.dest}"
                  + (" (initial commit created)" if result.committed else ""), soft_wrap=True)
    if not result.written:
        return
    steps = [f"cd {result.dest}"]
    if "compose" in spec.targets:
        steps += ["./scripts/init-secrets.sh", "docker compose up --build"]
    steps.append("less README.md  # configuration, deployment, operations")
    console.print("[bold]Next steps:[/]\n" + "\n".join(f"  {s}" for s in steps))
