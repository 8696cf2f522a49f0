"""The command line: parses, calls the library, and maps errors to exit codes (in `_handle_errors`).

Only typer is imported at start-up; every command imports what it needs, so `--help` stays fast.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from ._version import __version__

app = typer.Typer(
    name="agentgen",
    help="Generate a validated production deployment repository for a LangGraph agent.",
    # Plain help: rich help formatting costs ~200 ms of imports and `--help` must stay under 0.15 s.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
)

F = TypeVar("F", bound=Callable[..., Any])

# Choices are spelled out here (not imported from the spec) to keep `--help` from importing it;
# a test checks they match the spec's enums.
SCALES = "dev, small, medium, large"
TARGETS = "compose, kubernetes, helm, langgraph-platform"
SECRETS = "env, kubernetes, sealed-secrets, aws-secrets-manager, vault, gcp-secret-manager, azure-key-vault"


# Options `new` and `init` share.
ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="Answers file (YAML); see "
                                                   "`agentgen schema`.", show_default=False)]
ScaleOption = Annotated[str | None, typer.Option(help=f"One of: {SCALES}.", show_default=False)]
SecretsOption = Annotated[str | None, typer.Option(help=f"One of: {SECRETS}.", show_default=False)]
TargetOption = Annotated[list[str] | None, typer.Option(help=f"Repeatable. One of: {TARGETS}.",
                                                        show_default=False)]
SecretOption = Annotated[list[str] | None, typer.Option(
    "--secret", help="Repeatable. A secret the agent reads, by setting name (e.g. tavily_api_key): "
    "every target carries it and the runtime places it in the agent's environment.",
    show_default=False)]
NoInputOption = Annotated[bool, typer.Option("--no-input", help="Never prompt; unanswered questions "
                                             "take their defaults.")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Render and validate; print the files "
                                            "that would be written; write nothing.")]


def _consoles() -> tuple[Any, Any]:
    from rich.console import Console

    return Console(), Console(stderr=True, highlight=False)


def _handle_errors(func: F, *, exit_code: int | None = None) -> F:
    """User errors: one red line per problem on stderr and their exit code; Ctrl-C: exit 130.

    `exit_code` replaces every user error's own code (for commands whose codes mean something else).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from rich.markup import escape

        from .errors import UserError

        try:
            return func(*args, **kwargs)
        except UserError as exc:
            _, err = _consoles()
            for line in exc.lines():
                err.print(f"[red]error:[/] {escape(line)}", soft_wrap=True)
            raise typer.Exit(exit_code or exc.exit_code) from None
        except KeyboardInterrupt:
            _, err = _consoles()
            err.print("[red]aborted:[/] nothing was written")
            raise typer.Exit(130) from None
        except OSError as exc:
            # The file system refused a path the user gave (a symlink loop, a name too long, a
            # directory that vanished): one line naming it, not a traceback.
            _, err = _consoles()
            where = exc.filename if exc.filename is not None else "a path"
            err.print(f"[red]error:[/] {escape(str(where))}: {escape(exc.strerror or str(exc))}",
                      soft_wrap=True)
            raise typer.Exit(exit_code or 1) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"agentgen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Generate a validated production deployment repository for a LangGraph agent."""


def _add_secrets(answers: dict, secrets: list[str] | None) -> None:
    """--secret NAME adds to the answers' agent_secrets (an invalid list is left for the spec to
    name)."""
    given = answers.get("agent_secrets")
    if secrets and (given is None or isinstance(given, list)):
        answers["agent_secrets"] = list(dict.fromkeys([*(given or []), *secrets]))


@app.command()
@_handle_errors
def new(
    dest: Annotated[str | None, typer.Argument(help="Directory to create (default: ./NAME; '.' for "
                                               "the current one).", show_default=False)] = None,
    config: ConfigOption = None,
    name: Annotated[str | None, typer.Option(help="Project name (default: DEST's name).",
                                             show_default=False)] = None,
    scale: ScaleOption = None,
    secrets: SecretsOption = None,
    target: TargetOption = None,
    secret: SecretOption = None,
    no_input: NoInputOption = False,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty DEST, replacing "
                                        "only the files the template owns.")] = False,
    dry_run: DryRunOption = False,
    no_git: Annotated[bool, typer.Option("--no-git", help="Do not create a git repository.")] = False,
) -> None:
    """Create a new deployment repository (prompts on a terminal unless --no-input)."""
    from .api import generate
    from .errors import UserError
    from .prompt import ask_missing
    from .report import print_result
    from .spec import load_spec, read_answers_file

    out, err = _consoles()
    if dest is not None and not dest.strip():
        # Path("") is the current directory: writing there must be asked for, as '.'.
        raise UserError("DEST: empty; pass '.' to generate into the current directory")
    destination = Path(dest) if dest is not None else None
    answers = read_answers_file(config) if config else {}
    flags = {"name": name, "scale": scale, "secrets": secrets, "targets": target or None}
    answers.update({key: value for key, value in flags.items() if value is not None})
    _add_secrets(answers, secret)
    if "name" not in answers and destination is not None:
        # (not resolve(): DEST may sit below a symlink loop, refused with its own line later)
        answers["name"] = Path(os.path.abspath(destination)).name
    if not no_input and sys.stdin.isatty():
        answers = ask_missing(answers, out)
    if "name" not in answers:
        raise UserError("name: is required (pass DEST, --name, or a config file with name)")
    spec = load_spec(answers)
    destination = destination if destination is not None else Path(spec.name)
    with err.status("Rendering and validating…"):
        result = generate(spec, destination, force=force, git=not no_git, dry_run=dry_run)
    print_result(out, spec, result)


@app.command()
@_handle_errors
def init(
    directory: Annotated[Path, typer.Argument(help="The LangGraph project (default: the current "
                                              "directory).")] = Path("."),
    config: ConfigOption = None,
    graph: Annotated[str | None, typer.Option(help="[ID=]path/to/file.py:attribute: the graph of a "
                                              "project without langgraph.json (one is written).",
                                              show_default=False)] = None,
    name: Annotated[str | None, typer.Option(help="Project name (default: pyproject.toml's, else "
                                             "the directory's).", show_default=False)] = None,
    scale: ScaleOption = None,
    secrets: SecretsOption = None,
    target: TargetOption = None,
    secret: SecretOption = None,
    no_input: NoInputOption = False,
    force: Annotated[bool, typer.Option("--force", help="Move each file in a path agentgen must "
                                        "own (e.g. a Dockerfile) aside to <path>.orig.")] = False,
    dry_run: DryRunOption = False,
) -> None:
    """Add agentgen's deployment to an existing LangGraph project, in place (your files untouched)."""
    from .adopt import adopt, load_init_spec
    from .prompt import ask_missing
    from .report import print_adopt
    from .spec import read_answers_file

    out, err = _consoles()
    answers = read_answers_file(config) if config else {}
    flags = {"name": name, "scale": scale, "secrets": secrets, "targets": target or None}
    answers.update({key: value for key, value in flags.items() if value is not None})
    _add_secrets(answers, secret)
    spec, langgraph_json = load_init_spec(directory, answers, graph)
    if not no_input and sys.stdin.isatty():
        asked = ask_missing({**answers, "name": spec.name}, out)
        spec, langgraph_json = load_init_spec(directory, asked, graph)
    with err.status("Rendering and validating…"):
        result = adopt(spec, directory, config=langgraph_json, force=force, dry_run=dry_run)
    print_adopt(out, spec, result)


@app.command()
@_handle_errors
def schema() -> None:
    """Print the JSON Schema (draft 2020-12) that every answers file must match."""
    import json

    from .spec import spec_schema

    typer.echo(json.dumps(spec_schema(), indent=2))


@app.command()
@_handle_errors
def presets() -> None:
    """Show the scale presets (override any value with `overrides:` in the answers file)."""
    from rich.table import Table

    from .spec import presets as load_presets

    data = load_presets()
    table = Table(title="Scale presets", show_lines=False)
    table.add_column("setting", style="bold")
    for scale_name in data:
        table.add_column(scale_name, justify="right")
    for key in next(iter(data.values())):
        table.add_row(key, *(_cell(data[s][key]) for s in data))
    _consoles()[0].print(table)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "[green]yes[/]" if value else "[dim]no[/]"
    return str(value)


@app.command()
@_handle_errors
def validate(
    directory: Annotated[Path, typer.Argument(help="Project directory.")] = Path("."),
    import_graphs: Annotated[bool, typer.Option(
        "--import", help="Also import every graph of langgraph.json in the project's "
        "environment, as the runtime does.")] = False,
    python: Annotated[Path | None, typer.Option(
        "--python", help="The project environment's Python for --import (default: "
        "DIRECTORY/.venv/bin/python).", show_default=False)] = None,
) -> None:
    """Run every validator on a project (not its .venv, caches or git-ignored files)."""
    from .api import validate as validate_dir
    from .errors import UserError, ValidationFailedError
    from .report import print_checks

    if not directory.is_dir():
        raise UserError(f"{directory}: not a directory")
    report = validate_dir(directory, import_graphs=import_graphs, python=python)
    print_checks(_consoles()[0], report)
    if not report.ok:
        raise ValidationFailedError(report.errors, wrote_nothing=False)


@app.command()
@_handle_errors
def render(
    config: Annotated[Path, typer.Option("--config", "-c", help="Answers file (YAML), e.g. an "
                                         "examples/*.yml or a project's .copier-answers.yml.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write; an existing one "
                                      "keeps the files the template does not own.")],
    template_version: Annotated[str | None, typer.Option(
        "--template-version", help="Template release to render (default: this agentgen's).",
        show_default=False)] = None,
) -> None:
    """Render an answers file non-interactively (same bytes on every run; no git), for CI jobs."""
    from .api import generate
    from .report import print_result
    from .spec import load_spec, read_answers_file

    out_console, err = _consoles()
    spec = load_spec(read_answers_file(config))
    with err.status("Rendering and validating…"):
        result = generate(spec, out, force=True, git=False, template_version=template_version)
    print_result(out_console, spec, result)


@app.command()
@_handle_errors
def update(
    directory: Annotated[Path, typer.Argument(help="Generated repository.")] = Path("."),
    to: Annotated[str | None, typer.Option("--to", help="Template version, e.g. v0.2.0 "
                                           "(default: the latest).", show_default=False)] = None,
    data: Annotated[list[str] | None, typer.Option("--data", "-d", help="Change an answer: "
                                                   "KEY=VALUE (VALUE is YAML). Repeatable.",
                                                   show_default=False)] = None,
) -> None:
    """Update a generated repository to a newer template, keeping your edits (3-way merge).

    Exit 1 when conflicts are left (inline markers); nothing is committed.
    """
    from .lifecycle import update as run_update
    from .report import print_update
    from .spec import parse_data_options

    out, err = _consoles()
    with err.status("Updating…"):
        result = run_update(directory, to=to, data=parse_data_options(data or []))
    print_update(out, result)
    if not result.ok:
        raise typer.Exit(1)


@app.command()
@functools.partial(_handle_errors, exit_code=3)
def check(
    directory: Annotated[Path, typer.Argument(help="Generated repository.")] = Path("."),
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
) -> None:
    """Check for drift from the recorded answers and template version (for CI).

    Exit 0: clean; 1: a file the template owns was changed or removed (diff printed); 2: nothing
    drifted but a newer template version exists; 3: the check could not run.
    """
    from .errors import UserError
    from .lifecycle import check as run_check
    from .report import print_check

    if fmt not in ("text", "json"):
        raise UserError(f"--format: {fmt!r} is not one of: text, json")
    result = run_check(directory)
    if fmt == "json":
        import json

        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        print_check(_consoles()[0], result)
    raise typer.Exit(result.exit_code)


@app.command()
@_handle_errors
def accept(
    paths: Annotated[list[Path], typer.Argument(help="Files agentgen owns, as they are now.",
                                                show_default=False)],
    directory: Annotated[Path, typer.Option("--directory", "-C", help="Generated repository "
                                            "(relative PATHs are taken from it, as git -C does).")]
    = Path("."),
) -> None:
    """Accept your changes to files agentgen owns: agentgen check reports only later changes.

    Recorded in .agentgen/accepted.json (commit it); an update that merges cleanly into an
    accepted file keeps it accepted.
    """
    from rich.markup import escape

    from .lifecycle import accept as run_accept

    recorded = run_accept(directory, list(paths))
    out = _consoles()[0]
    for rel in recorded:
        out.print(f"accepted {escape(rel)}", soft_wrap=True)
    out.print(f"{len(recorded)} file(s) accepted; commit .agentgen/accepted.json with them"
              if recorded else "nothing to accept: the files match the template")


def main() -> None:
    from ._git import scrub_environment

    scrub_environment()  # inside a git hook or a CI job: their GIT_*/BC_* variables are not ours
    app()
