"""langgraph.json through langgraph-cli's own validator, then its Dockerfile generator
(what `langgraph dockerfile` / `langgraph build` run), which must succeed."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from . import Context, Finding, finding

NAME = "langgraph-cli"


def matches(rel: PurePosixPath) -> bool:
    return rel.name == "langgraph.json"


def check(path: Path, ctx: Context) -> list[Finding]:
    import click
    from langgraph_cli.config import config_to_docker, validate_config_file

    try:
        config = validate_config_file(path)
        config_to_docker(path, config)
    except (click.ClickException, ValueError, KeyError, FileNotFoundError) as exc:
        message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
        return [finding(ctx, path, NAME, " ".join(message.split()))]
    return []


def prepare() -> None:
    import langgraph_cli.config  # noqa: F401
