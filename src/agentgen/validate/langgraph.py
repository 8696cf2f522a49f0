"""langgraph.json through langgraph-cli's own validator, then its Dockerfile generator
(what `langgraph dockerfile` / `langgraph build` run), which must succeed; then every graph it
names must resolve: a `./path.py:attr` graph's file exists and defines `attr` at its top level (read,
not imported: importing needs the project's environment), a `module:attr` graph's module, when it is
a file of the project, too. Last, a note for each setting agentgen-runtime does not serve (it refuses
to start with them, e.g. `ui`), by the runtime's own rule."""

from __future__ import annotations

from functools import cache
from pathlib import Path, PurePosixPath
from types import ModuleType

from ._base import Context, Finding, Level, finding

NAME = "langgraph-cli"


def matches(rel: PurePosixPath) -> bool:
    return rel.name == "langgraph.json"


def check(path: Path, ctx: Context) -> list[Finding]:
    import click
    from langgraph_cli.config import config_to_docker, validate_config_file

    try:
        config = validate_config_file(path)
        problems = unresolved_graphs(path, config)  # named by graph, before langgraph-cli's own
        if not problems:
            config_to_docker(path, config)
    except (click.ClickException, ValueError, KeyError, FileNotFoundError) as exc:
        message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
        return [finding(ctx, path, NAME, " ".join(message.split()))]
    # a warning, not a failure: the deployment is right, the runtime refuses the setting at start-up
    return [finding(ctx, path, NAME, problem) for problem in problems] + [
        finding(ctx, path, NAME, problem, Level.NOTE)
        for problem in _runtime_config().unserved_keys(config)]


@cache
def _runtime_config() -> ModuleType:
    """agentgen-runtime's langgraph.json reader (standard library only), from the template this
    agentgen renders: the settings it refuses are named here as it names them at start-up."""
    import importlib.util
    import sys

    from .._resources import template_dir

    path = template_dir() / "project" / "runtime" / "src" / "agentgen_runtime" / "config.py"
    spec = importlib.util.spec_from_file_location("agentgen._runtime_config", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def unresolved_graphs(path: Path, config: dict) -> list[str]:
    """What does not resolve among the graphs of langgraph.json at `path`, and its custom auth
    handlers (`auth.path`), one line each."""
    base = path.parent
    roots = [base / d for d in config.get("dependencies", []) if isinstance(d, str)
             and d.startswith(".")] or [base]
    targets = [(f"graph {graph_id!r}", spec.get("path") if isinstance(spec, dict) else spec)
               for graph_id, spec in (config.get("graphs") or {}).items()]
    auth = config.get("auth")
    if isinstance(auth, dict) and auth.get("path"):
        targets.append(("auth.path", auth["path"]))
    problems = []
    for what, target in targets:
        if not isinstance(target, str) or ":" not in target:
            continue  # langgraph-cli's validator reports the form
        location, _, attr = target.rpartition(":")
        if location.endswith(".py") or "/" in location:
            file = (base / location).resolve()
            if not file.is_file():
                problems.append(f"{what}: {location} does not exist")
                continue
        else:
            file = _module_file(roots, location)
            if file is None:
                continue  # an installed module: resolved when the image is built
        defined = _top_level_names(file)
        if defined is None:
            problems.append(f"{what}: {location} is not valid Python")
        elif attr not in defined:
            problems.append(f"{what}: {location} does not define {attr!r}"
                            + (f" (top-level names: {', '.join(sorted(defined)[:8])})"
                               if defined else ""))
    return problems


def _module_file(roots: list[Path], module: str) -> Path | None:
    parts = module.split(".")
    for root in roots:
        for base in (root, root / "src"):
            for candidate in (base.joinpath(*parts).with_suffix(".py"),
                              base.joinpath(*parts, "__init__.py")):
                if candidate.is_file():
                    return candidate
    return None


def _top_level_names(file: Path) -> set[str] | None:
    """Names a module binds at its top level (assignments, definitions, imports; `*` imports and
    module __getattr__ make every name possible), or None when it does not parse."""
    import ast

    try:
        tree = ast.parse(file.read_bytes(), filename=str(file))
    except (SyntaxError, ValueError):
        return None
    names: set[str] = set()
    for node in _top_level(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    return _ANY
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    if "__getattr__" in names:
        return _ANY
    return names


class _Any(set):
    def __contains__(self, item: object) -> bool:
        return True


_ANY = _Any()


def _top_level(body: list) -> list:
    """Statements at a module's top level, including those under if/try/with blocks."""
    import ast

    blocks = (ast.If, ast.Try, getattr(ast, "TryStar", ast.Try), ast.ExceptHandler, ast.With,
              ast.AsyncWith)
    found = []
    for node in body:
        found.append(node)
        if isinstance(node, blocks):
            for field in ("body", "orelse", "finalbody", "handlers"):
                found.extend(_top_level(getattr(node, field, [])))
    return found
