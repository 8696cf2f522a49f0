"""`agentgen init`: agentgen's deployment added to an existing LangGraph project, in place.

The user owns the agent (their packages, `langgraph.json`, packaging and lock files, tests, README,
Makefile, `.gitignore`, `.env.example`); agentgen renders only its own files (template `mode:
init`) and writes them beside the user's. `derive_answers` reads the project (langgraph.json and its
packaging), `adopt` renders, validates the rendered files together with the project, and writes
them atomically. A path agentgen must own that holds something else is refused (or, with `force`,
moved aside to `<path>.orig`); a user file is never changed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._confine import writable_parent
from .errors import DestinationError, UserError, ValidationFailedError
from .spec import (
    NAME_PATTERN,
    PYTHON_VERSIONS,
    YAML_NON_STRING,
    Spec,
    default_package,
    load_spec,
)

CONFIG = "langgraph.json"
ANSWERS = ".copier-answers.yml"
# A dependency naming one of these means the agent reads these secrets (by setting name): the
# deployment carries each one. Integrations that authenticate otherwise (cloud identities: Vertex
# AI, Bedrock, Azure with managed identity) need none.
PROVIDER_SECRETS: dict[str, tuple[str, ...]] = {
    "langchain-openai": ("openai_api_key",),
    "openai": ("openai_api_key",),
    "langchain-anthropic": ("anthropic_api_key",),
    "anthropic": ("anthropic_api_key",),
    "langchain-google-genai": ("google_api_key",),
    "langchain-mistralai": ("mistral_api_key",),
    "langchain-groq": ("groq_api_key",),
    "langchain-cohere": ("cohere_api_key",),
    "langchain-fireworks": ("fireworks_api_key",),
    "langchain-together": ("together_api_key",),
    "langchain-deepseek": ("deepseek_api_key",),
    "langchain-xai": ("xai_api_key",),
    "tavily-python": ("tavily_api_key",),
    "langchain-tavily": ("tavily_api_key",),
    "exa-py": ("exa_api_key",),
    "langchain-exa": ("exa_api_key",),
}
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass
class AdoptResult:
    """What `adopt` did (or would do, with dry_run): paths relative to the project."""

    root: Path
    files: list[Path]
    report: Any
    written: bool
    moved: list[Path] = field(default_factory=list)  # user files moved aside to <path>.orig
    config_written: bool = False  # langgraph.json written from --graph
    notes: list[str] = field(default_factory=list)  # e.g. the resolution could not be checked


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _read_config(root: Path) -> dict[str, Any]:
    path = root / CONFIG
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise UserError(f"{path}: cannot read: nested too deeply") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("graphs"), dict) or not data["graphs"]:
        raise UserError(f"{path}: graphs: expected a mapping of graph ids to 'path.py:attr'")
    return data


def _pyproject(root: Path) -> dict[str, Any]:
    path = root / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None


def _dns_label(text: str) -> str | None:
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    label = re.sub(r"^[^a-z]+", "", label)[:40].rstrip("-")
    if re.fullmatch(NAME_PATTERN, label) and not re.fullmatch(YAML_NON_STRING, label):
        return label
    return None


def _requirement_names(root: Path, config: Mapping[str, Any], pyproject: Mapping[str, Any]) -> set[str]:
    names = {_canonical(name) for name in
             ((pyproject.get("tool") or {}).get("poetry") or {}).get("dependencies") or {}}
    project = pyproject.get("project") or {}
    for requirement in [*(project.get("dependencies") or ()),
                        *(d for d in config.get("dependencies") or () if isinstance(d, str)
                          and not d.startswith((".", "/")))]:
        if isinstance(requirement, str) and (match := _REQUIREMENT_NAME.match(requirement)):
            names.add(_canonical(match.group(1)))
    requirements = root / "requirements.txt"
    if requirements.is_file():
        for line in requirements.read_text(encoding="utf-8", errors="replace").splitlines():
            if (match := _REQUIREMENT_NAME.match(line)) and not line.lstrip().startswith("#"):
                names.add(_canonical(match.group(1)))
    return names


def _python_version(config: Mapping[str, Any], pyproject: Mapping[str, Any]) -> str:
    declared = str(config.get("python_version") or "")
    if declared in PYTHON_VERSIONS:
        return declared
    requires = (pyproject.get("project") or {}).get("requires-python")
    if isinstance(requires, str):
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        try:
            allowed = [v for v in PYTHON_VERSIONS if SpecifierSet(requires).contains(f"{v}.0")]
        except InvalidSpecifier:
            allowed = []
        if allowed:
            return "3.12" if "3.12" in allowed else allowed[-1]
    return "3.12"


def derive_answers(root: Path, config: Mapping[str, Any]) -> dict[str, Any]:
    """Answers read from the project: name, description, Python version, the secrets its
    dependencies read (model providers', search tools'), whether the project has its own
    .dockerignore, and whether its store needs pgvector (langgraph.json store.index)."""
    pyproject = _pyproject(root)
    # PEP 621 metadata, else Poetry's own table (Poetry < 2)
    project = pyproject.get("project") or (pyproject.get("tool") or {}).get("poetry") or {}
    answers: dict[str, Any] = {"mode": "init", "own_dockerignore": not (root / ".dockerignore").exists()}
    name = None
    for candidate in (project.get("name"), root.resolve().name):
        if isinstance(candidate, str) and (name := _dns_label(candidate)):
            break
    if name:
        answers["name"] = name
        # (init renders no Python package: `package` only names the database and its user)
        answers["package"] = default_package(name)
    description = project.get("description")
    if isinstance(description, str) and description.strip():
        answers["description"] = description.strip()[:500]
    answers["python_version"] = _python_version(config, pyproject)
    store = config.get("store")
    answers["semantic_search"] = isinstance(store, dict) and bool(store.get("index"))
    auth = config.get("auth")
    answers["custom_auth"] = isinstance(auth, dict) and bool(auth.get("path"))
    names = _requirement_names(root, config, pyproject)
    secrets = [secret for package, needed in PROVIDER_SECRETS.items() if package in names
               for secret in needed]
    if secrets:
        answers["agent_secrets"] = sorted(set(secrets))
    return answers


def graph_config(root: Path, graph: str) -> dict[str, Any]:
    """The langgraph.json `--graph [ID=]path.py:attr` stands for (checked: the file exists and
    defines the attribute)."""
    from .validate.langgraph import unresolved_graphs

    graph_id, _, location = graph.rpartition("=")
    graph_id = graph_id or "agent"
    path, _, attr = location.rpartition(":")
    if not path.endswith(".py") or not attr.isidentifier() or not re.fullmatch(r"[A-Za-z0-9_-]+", graph_id):
        raise UserError(f"--graph: {graph!r}: expected [ID=]path/to/file.py:attribute")
    relative = Path(path)
    if relative.is_absolute() or ".." in relative.parts:
        raise UserError(f"--graph: {path}: a path inside the project")
    data: dict[str, Any] = {"dependencies": ["."], "graphs": {graph_id: f"./{relative.as_posix()}:{attr}"}}
    if (root / ".env").is_file():
        data["env"] = ".env"
    problems = unresolved_graphs(root / CONFIG, data)
    if problems:
        raise UserError(f"--graph: {problems[0].split(': ', 1)[1]}")
    return data


def load_init_spec(root: Path, answers: Mapping[str, Any], graph: str | None) -> tuple[Spec, dict | None]:
    """The spec of `root` (derived answers under the given ones) and the langgraph.json to write
    (from `graph`), or raise one line."""
    check_project(root, graph)
    config = graph_config(root, graph) if graph else _read_config(root)
    derived = derive_answers(root, config)
    if "name" not in {**derived, **answers}:
        raise UserError(f"name: cannot be derived from {root} (pass --name)")
    merged = {**derived, **answers, "mode": "init"}
    given = answers.get("agent_secrets")
    if isinstance(given, list):  # the user's secrets add to the ones the dependencies need
        merged["agent_secrets"] = list(dict.fromkeys([*derived.get("agent_secrets", []), *given]))
    return load_spec(merged), (config if graph else None)


def check_project(root: Path, graph: str | None) -> None:
    if not root.is_dir():
        raise DestinationError(f"{root}: not a directory")
    if (root / ANSWERS).exists():
        raise DestinationError(f"{root}: agentgen already manages this project ({ANSWERS}): "
                               "use agentgen update")
    has_config = (root / CONFIG).is_file()
    if graph and has_config:
        raise UserError(f"--graph: {root / CONFIG} exists; declare graphs there")
    if not graph and not has_config:
        raise UserError(f"{root}: no {CONFIG} (pass --graph path/to/file.py:attribute to write one)")


def adopt(spec: Spec, root: Path | str, *, config: Mapping[str, Any] | None = None,
          force: bool = False, dry_run: bool = False,
          template_version: str | None = None) -> AdoptResult:
    """Render agentgen's files for `spec` (mode init), validate them with the project, write them.

    `config` is a langgraph.json to write too (from --graph). A rendered path the project holds
    with other content is refused (DestinationError listing them), or with `force` moved aside to
    `<path>.orig`. Nothing is written when anything fails. `template_version` renders another
    release of the installed history (as `generate` does).
    """
    from .history import installed_version, template_at
    from .validate import Report, iter_files, validator_process
    from .write import check_writable, place, staging_dir

    given, root = Path(root), Path(root).absolute()
    check_writable(root)  # the project, and its parent where the files are staged
    with staging_dir(root) as scratch, template_at(template_version or installed_version()) as template, \
            validator_process() as validate_in_worker:
        from .render import render

        tree = scratch / "tree"
        render(spec, tree, template=template, version=template_version)
        if config is not None:
            (tree / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        rendered = [Path(p) for p in iter_files(tree)]
        for rel in rendered:  # before anything is compared, read or written
            writable_parent(root, rel)
        found, notes = _conflicts(tree, root / CONFIG if config is None else tree / CONFIG,
                                  spec.python_version)
        if found:
            raise IncompatibleProjectError(found)
        clashes, same = [], []
        for rel in rendered:
            target = root / rel
            if target.is_symlink() or target.exists():
                if target.is_file() and not target.is_symlink() and \
                        target.read_bytes() == (tree / rel).read_bytes():
                    same.append(rel)
                else:
                    clashes.append(rel)
        if clashes and not force:
            raise DestinationError(
                f"{root}: holds files agentgen must own: {', '.join(p.as_posix() for p in clashes)} "
                "(move them away, or pass --force to keep each as <path>.orig); nothing was written")
        for rel in clashes:
            if (root / f"{rel}.orig").exists() or (root / f"{rel}.orig").is_symlink():
                raise DestinationError(f"{root / rel}.orig: exists; cannot move {rel} aside")
        report = _validate_with_project(root, tree, rendered, scratch, validate_in_worker)
        if not report.ok:
            raise ValidationFailedError(report.errors)
        for rel in same:
            (tree / rel).unlink()
        files = [p for p in rendered if p not in same]
        if dry_run:
            return AdoptResult(given, files, report, written=False, moved=clashes,
                               config_written=config is not None, notes=notes)
        moved: list[Path] = []
        try:
            for rel in clashes:
                os.replace(root / rel, root / f"{rel}.orig")
                moved.append(rel)
            place(tree, root, scratch=scratch)
        except BaseException:
            for rel in reversed(moved):
                os.replace(root / f"{rel}.orig", root / rel)
            raise
    assert isinstance(report, Report)
    return AdoptResult(given, files, report, written=True, moved=clashes,
                       config_written=config is not None, notes=notes)


class IncompatibleProjectError(UserError):
    """The project needs versions outside the ranges the runtime needs: one line per package."""

    def __init__(self, lines: list[str]) -> None:
        self.conflicts = lines
        super().__init__("; ".join(lines))

    def lines(self) -> list[str]:
        return [*self.conflicts, "no environment can hold both your project's requirements and "
                                 "the server's: upgrade the packages named above; "
                                 "nothing was written"]


def _conflicts(tree: Path, config: Path, python_version: str) -> tuple[list[str], list[str]]:
    """What the runtime's install script (the rendered install.py, the code the image and `make -f
    agentgen.mk install` run) finds: (conflicts between the project's requirements and the
    runtime's ranges, one line per package; notes). First its pins against the runtime's ranges,
    then one resolution by uv for the project's Python; a resolution that fails for another
    reason (no index reachable) is a note, not a refusal."""
    import subprocess
    import sys

    script = tree / "runtime" / "src" / "agentgen_runtime" / "install.py"
    if not script.is_file() or not config.is_file():
        return [], []
    base = [sys.executable, str(script), "--config", str(config), "--runtime", str(tree / "runtime"),
            "--constraint", str(tree / "deploy" / "constraints.txt")]
    prefix = "install.py: conflict: "
    for extra in (["--check"], ["--resolve", "--python-version", python_version]):
        try:
            proc = subprocess.run([*base, *extra], capture_output=True, text=True, check=False,
                                  timeout=300)
        except subprocess.TimeoutExpired:
            return [], ["the install could not be checked (uv took over 300 s)"]
        found = [line[len(prefix):] for line in proc.stderr.splitlines() if line.startswith(prefix)]
        if found:
            return found, []
        if proc.returncode != 0:
            detail = proc.stderr.strip().splitlines() or ["no output"]
            if extra[0] == "--check":
                return [detail[-1]], []
            said = " ".join(" ".join(detail[:3]).replace("install.py: ", "").split())
            return [], [f"the install was not checked: uv could not resolve the project "
                        f"({said[:300]})"]
    moved = [line.removeprefix("install.py: note: ") for line in proc.stderr.splitlines()
             if line.startswith("install.py: note: ")]
    return [], moved


def _validate_with_project(root: Path, tree: Path, rendered: list[Path], scratch: Path,
                           validate_tree_in_worker: Any) -> Any:
    """Validate the rendered files as they will sit in the project (the project's files copied
    beside them, minus environments, caches and what git ignores); findings about the user's own
    files are theirs, except langgraph.json's graphs (what the deployment serves)."""
    from .validate import iter_files

    merged = scratch / "merged"
    shutil.copytree(tree, merged, symlinks=True)
    ours = {p.as_posix() for p in rendered} | {CONFIG}
    for rel in iter_files(root, project=True):
        source, target = root / rel, merged / rel
        if rel.as_posix() in ours and target.exists():
            continue  # what will be there: the rendered file (a clash is moved aside)
        if any(parent.as_posix() in ours for parent in rel.parents):
            continue  # inside a directory where agentgen renders a file: moved aside with it
        if source.is_file() and not source.is_symlink():
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)  # the staging directory is on the project's file system
            except OSError:
                shutil.copy2(source, target)
    if not (merged / CONFIG).exists() and (root / CONFIG).is_file():
        shutil.copy2(root / CONFIG, merged / CONFIG)
    report = validate_tree_in_worker(merged)

    return report.judged_for(lambda path: path in ours or not (root / path).exists())
