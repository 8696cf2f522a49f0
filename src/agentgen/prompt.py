"""Prompt phase: ask, on a terminal, for the answers that flags and the answers file left open.

The three questions are scale, targets and secrets (targets first, so that only the secrets backends
that can work with them are offered), plus the name when neither DEST nor --name gave one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.prompt import Prompt

from .errors import SpecError
from .spec import (
    KUBERNETES_ONLY_BACKENDS,
    KUBERNETES_TARGETS,
    Scale,
    SecretsBackend,
    Target,
    load_spec,
    presets,
)

Ask = Callable[..., str]


def _allowed_secrets(targets: list[str]) -> list[str]:
    """The backends that can work with these targets (the spec's cross-field rules, as choices)."""
    k8s = any(t in KUBERNETES_TARGETS for t in targets)

    def works(backend: SecretsBackend) -> bool:
        if backend is SecretsBackend.ENV:
            return not k8s
        return k8s or backend not in KUBERNETES_ONLY_BACKENDS

    return [b.value for b in SecretsBackend if works(b)]


def _ask_targets(console: Console, ask: Ask, default: list[str]) -> list[str]:
    allowed = [t.value for t in Target]
    while True:
        raw = ask(f"Targets [dim](comma-separated: {', '.join(allowed)})[/]",
                  default=",".join(default), console=console)
        chosen = [part.strip() for part in raw.split(",") if part.strip()]
        unknown = [t for t in chosen if t not in allowed]
        if chosen and not unknown:
            return list(dict.fromkeys(chosen))
        console.print(f"[red]targets: {', '.join(unknown) or '(none)'} is not one of: "
                      f"{', '.join(allowed)}[/]")


def ask_missing(answers: dict[str, Any], console: Console, ask: Ask = Prompt.ask) -> dict[str, Any]:
    """Return `answers` completed interactively; questions already answered are not asked."""
    answers = dict(answers)
    while "name" not in answers:
        name = ask("Project name [dim](lowercase letters, digits, '-')[/]", console=console)
        try:
            load_spec({"name": name})
            answers["name"] = name
        except SpecError as exc:
            console.print(f"[red]{exc}[/]")
    if "scale" not in answers:
        summary = ", ".join(f"{s} ({presets()[s]['replicas']} replica"
                            f"{'s' if presets()[s]['replicas'] > 1 else ''})" for s in Scale)
        console.print(f"[dim]Scales: {summary}; `agentgen presets` shows every value.[/]")
        answers["scale"] = ask("Scale", choices=[s.value for s in Scale], default=Scale.DEV.value,
                               console=console)
    if "targets" not in answers:
        answers["targets"] = _ask_targets(console, ask, [Target.COMPOSE.value])
    if "secrets" not in answers:
        allowed = _allowed_secrets(answers["targets"])
        answers["secrets"] = ask("Secrets backend", choices=allowed, default=allowed[0],
                                 console=console)
    return answers
