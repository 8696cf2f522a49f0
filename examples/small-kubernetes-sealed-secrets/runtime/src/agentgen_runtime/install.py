"""Install a LangGraph project and this runtime into the running Python's environment, the way the
project's own `langgraph.json` and packaging say (what `agentgen init` projects' image and
`make -f agentgen.mk install` run, before the runtime is installed: standard library only).

    python runtime/src/agentgen_runtime/install.py --runtime './runtime[redis]' \\
        --constraint deploy/constraints.txt [--editable] [--print]

`dependencies` of `langgraph.json` (default `["."]`), as LangGraph Platform reads them: a local
directory with a build backend (`pyproject.toml` with `[build-system]`, `setup.py`, `setup.cfg`) is
installed as a package; one without is source (the runtime makes it importable) whose
`requirements.txt`, else `[project].dependencies`, is installed; anything else is a requirement.

Versions: `--constraint` (the runtime's tested pins) merged with the project's lock. A `uv.lock`
(else `poetry.lock`, else `pdm.lock`) beside `langgraph.json` pins every package it resolved from an
index that the project's main dependencies need (never its development groups), and its pin wins
over the runtime's; a package a requirements file pins with `==` drops the runtime's pin too.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

BUILD_FILES = ("setup.py", "setup.cfg")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*===?\s*([^\s;#]+)")


class InstallError(Exception):
    """The project cannot be installed as its langgraph.json says (one line)."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject(directory: Path) -> dict:
    path = directory / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InstallError(f"{path}: {exc}") from None


def is_package(directory: Path) -> bool:
    """Whether pip can build `directory` as a distribution (a build backend is declared)."""
    return "build-system" in _pyproject(directory) or any((directory / f).is_file() for f in BUILD_FILES)


def plan(config: Path) -> tuple[list[list[str]], list[Path]]:
    """The pip arguments for every dependency of `config` (each a list: ['-e'?, item] or ['-r',
    file]), and the requirements files named (for their pins)."""
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InstallError(f"{config}: {exc}") from None
    dependencies = data.get("dependencies") if isinstance(data, dict) else None
    if dependencies is None:
        dependencies = ["."]
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise InstallError(f"{config}: dependencies: expected a list of strings")
    steps: list[list[str]] = []
    files: list[Path] = []
    for dependency in dependencies:
        if not dependency.startswith((".", "/")):
            steps.append([dependency])
            continue
        directory = (config.parent / dependency).resolve()
        if not directory.is_dir():
            raise InstallError(f"{config}: dependencies: {dependency}: no such directory")
        if is_package(directory):
            steps.append([str(directory)])
        elif (directory / "requirements.txt").is_file():
            files.append(directory / "requirements.txt")
            steps.append(["-r", str(directory / "requirements.txt")])
        else:
            project = _pyproject(directory).get("project") or {}
            steps.extend([requirement] for requirement in project.get("dependencies") or ())
    return steps, files


LOCK_FILES = ("uv.lock", "poetry.lock", "pdm.lock")


def _from_an_index(lock: str, package: dict) -> bool:
    """Whether a lock entry was resolved from a package index (not git, a path or a URL)."""
    source = package.get("source") or {}
    if lock == "uv.lock":
        return "registry" in source
    if lock == "poetry.lock":
        return source.get("type", "legacy") == "legacy"
    return not any(key in package for key in ("path", "url", "git", "editable", "revision"))


def lock_pins(project: Path) -> dict[str, str]:
    """{canonical name: 'name==version'} of every package the project's lock (uv.lock, else
    poetry.lock, else pdm.lock) resolved from an index and that the project needs to run: its
    main dependencies and theirs, never its development groups (their pins, e.g. an old starlette
    a dev tool wants, must not constrain the server's environment)."""
    path = next((project / name for name in LOCK_FILES if (project / name).is_file()), None)
    if path is None:
        return {}
    try:
        lock = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InstallError(f"{path}: {exc}") from None
    packages = [p for p in lock.get("package") or () if p.get("name") and p.get("version")]
    needed = _needed(path.name, packages, project)
    pins = {}
    for package in packages:
        name = canonical(package["name"])
        if _from_an_index(path.name, package) and (needed is None or name in needed):
            pins[name] = f"{package['name']}=={package['version']}"
    return pins


def _needed(lock: str, packages: list[dict], project: Path) -> set[str] | None:
    """Canonical names of the packages the project's main dependencies need (None: the lock
    does not say, every package counts)."""
    if lock == "pdm.lock":
        if not any("groups" in p for p in packages):
            return None
        return {canonical(p["name"]) for p in packages if "default" in (p.get("groups") or ())}
    if lock == "poetry.lock":
        if any("groups" in p for p in packages):  # Poetry 2
            return {canonical(p["name"]) for p in packages if "main" in (p.get("groups") or ())}
        if any("category" in p for p in packages):  # Poetry < 1.5
            return {canonical(p["name"]) for p in packages if p.get("category") == "main"}
        roots = _main_dependency_names(project)
        edges = {canonical(p["name"]): [canonical(n) for n in (p.get("dependencies") or {})]
                 for p in packages}
        return _reachable(roots, edges)
    # uv.lock: the project's own entries (virtual or editable sources) are the roots; a
    # dependency with extras brings the optional dependencies of those extras
    by_name: dict[str, list[dict]] = {}
    for package in packages:
        by_name.setdefault(canonical(package["name"]), []).append(package)
    roots = [p for p in packages if {"virtual", "editable"} & set(p.get("source") or {})]
    if not roots:
        return None
    needed: set[str] = set()
    stack = [(dep, canonical(dep["name"])) for root in roots for dep in root.get("dependencies") or ()
             if dep.get("name")]
    needed |= {canonical(root["name"]) for root in roots}
    while stack:
        dep, name = stack.pop()
        extras = dep.get("extra") or ()
        if name in needed and not extras:
            continue
        needed.add(name)
        for package in by_name.get(name, ()):
            deps = list(package.get("dependencies") or ())
            for extra in extras:
                deps += (package.get("optional-dependencies") or {}).get(extra) or ()
            stack.extend((d, canonical(d["name"])) for d in deps if d.get("name"))
    return needed


def _main_dependency_names(project: Path) -> set[str]:
    data = _pyproject(project)
    names = {canonical(m.group(1)) for r in (data.get("project") or {}).get("dependencies") or ()
             if (m := _NAME.match(r))}
    poetry = ((data.get("tool") or {}).get("poetry") or {}).get("dependencies") or {}
    return names | {canonical(n) for n in poetry if canonical(n) != "python"}


def _reachable(roots: set[str], edges: dict[str, list[str]]) -> set[str]:
    seen, stack = set(), list(roots)
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(edges.get(name, ()))
    return seen


def requirement_pins(path: Path) -> dict[str, str]:
    """{canonical name: version} a requirements file pins exactly (following its -r includes)."""
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith(("-r ", "--requirement ")):
            pins.update(requirement_pins(path.parent / line.split(maxsplit=1)[1]))
        elif (match := _PIN.match(line)) is not None:
            pins[canonical(match.group(1))] = match.group(3)
    return pins


def runtime_requirements(runtime: str) -> list[str]:
    """The requirements the runtime declares (its ranges), with the extras `runtime` names
    (`./runtime[redis]`), read from its pyproject.toml."""
    path, _, extras = runtime.partition("[")
    data = (_pyproject(Path(path)).get("project") or {})
    requirements = list(data.get("dependencies") or ())
    optional = data.get("optional-dependencies") or {}
    for extra in filter(None, (e.strip() for e in extras.rstrip("]").split(","))):
        requirements += optional.get(extra) or ()
    return requirements


def conflicts(config: Path, runtime: str) -> list[str]:
    """One line per package the project's lock or requirements pin outside the range the runtime
    needs (so that no environment can hold both), naming the package, the project's pin, which of
    its dependencies brings it when the lock says, and the runtime's requirement. Empty when pip's
    vendored `packaging` is not importable (pip reports the conflict itself then)."""
    try:
        from pip._vendor.packaging.requirements import InvalidRequirement, Requirement
        from pip._vendor.packaging.version import InvalidVersion, Version
    except ImportError:
        return []
    _, files = plan(config)
    pinned = {name: pin.split("==", 1)[1] for name, pin in lock_pins(config.parent).items()}
    for path in files:
        pinned.update(requirement_pins(path))
    parents = lock_parents(config.parent)
    lines = []
    for text in runtime_requirements(runtime):
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        name = canonical(requirement.name)
        if name not in pinned or (requirement.marker and not requirement.marker.evaluate()):
            continue
        try:
            allowed = requirement.specifier.contains(Version(pinned[name]), prereleases=True)
        except InvalidVersion:
            continue
        if not allowed:
            via = f", brought by {parents[name]}" if parents.get(name) else ""
            lines.append(f"{requirement.name}: your project pins {pinned[name]}{via}, but "
                         f"agentgen-runtime needs {requirement.name}{requirement.specifier}")
    return lines


def lock_parents(project: Path) -> dict[str, str]:
    """{canonical name: the first of the project's direct dependencies that brings it} from a
    uv.lock (empty for other locks)."""
    path = project / "uv.lock"
    if not path.is_file():
        return {}
    try:
        packages = tomllib.loads(path.read_text(encoding="utf-8")).get("package") or ()
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    edges = {canonical(p["name"]): [canonical(d["name"]) for d in p.get("dependencies") or ()
                                    if d.get("name")] for p in packages if p.get("name")}
    roots = [p for p in packages if {"virtual", "editable"} & set(p.get("source") or {})]
    parents: dict[str, str] = {}
    for root in roots:
        for direct in edges.get(canonical(root["name"]), ()):
            stack = [direct]
            while stack:
                name = stack.pop()
                if name in parents:
                    continue
                parents[name] = direct
                stack.extend(edges.get(name, ()))
    return parents


def constraints(runtime_pins: Path, project: Path, files: list[Path]) -> list[str]:
    """The runtime's pins, but where the project's lock or requirements pin the package."""
    locked = lock_pins(project)
    theirs = set(locked) | {name for f in files for name in requirement_pins(f)}
    lines = list(locked.values())
    for line in runtime_pins.read_text(encoding="utf-8").splitlines():
        match = _NAME.match(line)
        if match and not line.lstrip().startswith("#") and canonical(match.group(1)) not in theirs:
            lines.append(line.strip())
    return lines


def command(args: argparse.Namespace, constraint_file: Path) -> list[str]:
    steps, _ = plan(args.config)
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
           "--constraint", str(constraint_file)]
    editable = ["-e"] if args.editable else []
    cmd += [*editable, args.runtime]
    for step in steps:
        local = len(step) == 1 and Path(step[0]).is_absolute()
        cmd += [*editable, *step] if local else step
    return cmd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="install.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("langgraph.json"),
                        help="the project's langgraph.json (default: ./langgraph.json)")
    parser.add_argument("--runtime", default="./runtime", help="the runtime's pip requirement")
    parser.add_argument("--constraint", type=Path, required=True, help="the runtime's pins")
    parser.add_argument("--editable", action="store_true",
                        help="local packages and the runtime editable (a development environment)")
    parser.add_argument("--print", action="store_true", dest="dry",
                        help="print the constraints and the pip command; install nothing")
    parser.add_argument("--check", action="store_true",
                        help="only say whether the project's pins fit the runtime (exit 2 if not)")
    args = parser.parse_args(argv)
    try:
        args.config = args.config.resolve()
        found = conflicts(args.config, args.runtime)
        for line in found:
            print(f"install.py: conflict: {line}", file=sys.stderr)
        if found:  # before pip: it would only say that something conflicts
            print("install.py: no environment holds both your project's pins and the runtime's "
                  "requirements; upgrade the packages named above in your project", file=sys.stderr)
            return 2
        if args.check:
            return 0
        _, files = plan(args.config)
        lines = constraints(args.constraint, args.config.parent, files)
        with tempfile.NamedTemporaryFile("w", suffix="-constraints.txt", delete=False) as out:
            out.write("\n".join(lines) + "\n")
        pinned = Path(out.name)
        try:
            cmd = command(args, pinned)
            if args.dry:
                print("\n".join(lines))
                print(shlex.join(cmd))
                return 0
            return subprocess.run(cmd, check=False).returncode  # noqa: S603 - pip, with our arguments
        finally:
            pinned.unlink(missing_ok=True)
    except (InstallError, OSError) as exc:
        print(f"install.py: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
