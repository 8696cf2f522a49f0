"""Install a LangGraph project and this runtime into the running Python's environment, the way the
project's own `langgraph.json` and packaging say (what `agentgen init` projects' image and
`make -f agentgen.mk install` run, before the runtime is installed: standard library only).

    python runtime/src/agentgen_runtime/install.py --runtime './runtime[redis]' \\
        --constraint deploy/constraints.txt [--editable] [--print]

`dependencies` of `langgraph.json` (default `["."]`), as LangGraph Platform reads them: a local
directory with a build backend (`pyproject.toml` with `[build-system]`, `setup.py`, `setup.cfg`) is
installed as a package; one without is source (the runtime makes it importable) whose
`requirements.txt`, else `[project].dependencies`, is installed; anything else is a requirement.

Versions: one resolution by uv for the running interpreter. The project's lock (`uv.lock`, else
`poetry.lock`, else `pdm.lock`, beside `langgraph.json`) decides the version of every package it
resolved from an index that the project's main dependencies need (never its development groups):
those pins are constraints, as are `==` pins of its requirements files. The runtime's tested pins
(`--constraint`) are preferences only, so a package the project constrains indirectly takes a
version that fits (e.g. the PostgreSQL checkpointer over the project's `langgraph-checkpoint`);
the runtime's own ranges still hold. A pin of the project's outside those ranges is named before
anything is resolved, one line each. uv reads its `UV_*` settings; `PIP_INDEX_URL`,
`PIP_EXTRA_INDEX_URL` and `PIP_FIND_LINKS` are carried over when those are not set (pip's
configuration files are not read).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
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
    except RecursionError:
        raise InstallError(f"{config}: nested too deeply") from None
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


@dataclass(frozen=True)
class Pins:
    """What a project pins: its lock's pins ({canonical name: "name==version"}) and the exact pins
    of the requirements files langgraph.json names ({canonical name: version})."""

    locked: dict[str, str]
    required: dict[str, str]

    @classmethod
    def of(cls, config: Path) -> Pins:
        _, files = plan(config)
        required: dict[str, str] = {}
        for path in files:
            required.update(requirement_pins(path))
        return cls(lock_pins(config.parent), required)

    @property
    def names(self) -> set[str]:
        return set(self.locked) | set(self.required)

    def versions(self) -> dict[str, str]:
        return {**{name: pin.split("==", 1)[1] for name, pin in self.locked.items()},
                **self.required}


def conflicts(config: Path, runtime: str, pins: Pins) -> list[str]:
    """One line per package the project's lock or requirements pin outside the range the runtime
    needs (so that no environment can hold both), naming the package, the project's pin, which of
    its dependencies brings it when the lock says, and the runtime's requirement."""
    return outside_ranges(pins.versions(), lock_parents(config.parent), runtime, "pins")


def outside_ranges(pinned: dict[str, str], parents: dict[str, str], runtime: str,
                   verb: str) -> list[str]:
    """One line per package of `pinned` ({canonical name: version}) outside the runtime's range.
    Empty when pip's vendored `packaging` is not importable (the resolver explains then)."""
    try:
        from pip._vendor.packaging.requirements import InvalidRequirement, Requirement
        from pip._vendor.packaging.version import InvalidVersion, Version
    except ImportError:
        return []
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
            lines.append(f"{requirement.name}: your project {verb} {pinned[name]}{via}, but "
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


def preferences(runtime_pins: Path, theirs: set[str]) -> list[str]:
    """The runtime's tested pins of the packages the project's lock does not pin: versions the
    resolver prefers, never requires (a package the project constrains indirectly, e.g. the
    PostgreSQL checkpointer over the project's langgraph-checkpoint, takes another version)."""
    lines = []
    for line in runtime_pins.read_text(encoding="utf-8").splitlines():
        match = _NAME.match(line)
        if match and not line.lstrip().startswith("#") and canonical(match.group(1)) not in theirs:
            lines.append(line.strip())
    return lines


def requirements(args: argparse.Namespace) -> list[str]:
    """What is installed: the runtime and every dependency of langgraph.json, one requirement
    line each (local directories by absolute path, editable with --editable)."""
    steps, _ = plan(args.config)
    editable = ["-e"] if args.editable else []
    runtime, _, extras = args.runtime.partition("[")
    lines = [" ".join([*editable, str(Path(runtime).resolve()) + (f"[{extras}" if extras else "")])]
    for step in steps:
        local = len(step) == 1 and Path(step[0]).is_absolute()
        lines.append(" ".join([*editable, *step] if local else step))
    return lines


def find_uv(given: str | None) -> str:
    """uv's executable: --uv, else the `uv` package of this Python, else uv on PATH."""
    if given:
        return given
    try:
        from uv import find_uv_bin  # the PyPI package `uv` (agentgen.mk installs it pinned)

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise InstallError("uv (the resolver this install runs) is not installed: add the "
                               "PyPI package uv, pinned, to this environment, or pass --uv PATH") from None
        return found


def uv_environment() -> dict[str, str]:
    """The environment for uv, with pip's index settings carried over (a build that sets
    PIP_INDEX_URL for a private mirror gets the same index from uv) and the platform's
    certificates trusted (a TLS-inspecting proxy's CA in the system store works for uv as for
    pip); uv's own settings win."""
    env = dict(os.environ)
    env.setdefault("UV_SYSTEM_CERTS", "1")  # the platform's trust store, as pip uses it
    for pip, uv in (("PIP_INDEX_URL", "UV_INDEX_URL"), ("PIP_EXTRA_INDEX_URL", "UV_EXTRA_INDEX_URL"),
                    ("PIP_FIND_LINKS", "UV_FIND_LINKS")):
        if env.get(pip) and uv not in env:
            env[uv] = env[pip]
    return env


def resolved(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """({canonical name: version}, {canonical name: the first package it is required by}) of a
    `uv pip compile` output."""
    pins: dict[str, str] = {}
    parents: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if (match := _PIN.match(line)) is not None:
            current = canonical(match.group(1))
            pins[current] = match.group(3)
            continue
        if line[:1] not in ("", " ", "#"):  # another requirement (-e path, a URL)
            current = None
        via = line.strip().removeprefix("#").strip()
        if current and current not in parents and via and via != "via":
            parents[current] = via.removeprefix("via ").split()[0]
    return pins, parents


class Resolver:
    """`uv pip compile` of the project with the runtime for one interpreter (`--python`) or
    Python version, in a scratch directory; then `uv pip install` of exactly its output."""

    def __init__(self, uv: str, work: Path, target: list[str]) -> None:
        self.uv, self.work, self.target = uv, work, target

    def compile(self, requirements: list[str], constraints: list[str],
                preferred: list[str]) -> subprocess.CompletedProcess:
        files = {"requirements.in": requirements, "constraints.txt": constraints,
                 "resolved.txt": preferred}  # an existing output file: uv prefers its versions
        for name, lines in files.items():
            (self.work / name).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        cmd = [self.uv, "pip", "compile", "--quiet", *self.target, "--constraint",
               str(self.work / "constraints.txt"), "--output-file", str(self.work / "resolved.txt"),
               str(self.work / "requirements.in")]
        return subprocess.run(cmd, check=False, capture_output=True, text=True,  # noqa: S603
                              env=uv_environment())

    def output(self) -> str:
        return (self.work / "resolved.txt").read_text(encoding="utf-8")

    def install(self) -> int:
        cmd = [self.uv, "pip", "install", "--quiet", *self.target, "--requirement",
               str(self.work / "resolved.txt")]
        return subprocess.run(cmd, check=False, env=uv_environment()).returncode  # noqa: S603


def resolve(resolver: Resolver, args: argparse.Namespace, pins: Pins) -> tuple[bool, list[str]]:
    """Resolve the project with the runtime: first with every pin of the project's lock held;
    when that has no solution, with the pins of the project's direct dependencies held and the
    others (packages they bring) preferred. Returns (resolved, lines to print: the lock's pins
    that moved, or why nothing resolves)."""
    project = args.config.parent
    locked = pins.locked
    wanted = requirements(args)
    preferred = preferences(args.constraint, pins.names)
    done = resolver.compile(wanted, list(locked.values()), preferred)
    if done.returncode == 0:
        return True, []
    direct = _main_dependency_names(project)
    held = {name: pin for name, pin in locked.items() if name in direct}
    if len(held) < len(locked):
        relaxed = [pin for name, pin in locked.items() if name not in held]
        retry = resolver.compile(wanted, list(held.values()), relaxed + preferred)
        if retry.returncode == 0:
            got, _ = resolved(resolver.output())
            moved = [f"{pin.split('==')[0]} {pin.split('==')[1]} -> {got[name]}"
                     for name, pin in locked.items() if got.get(name, pin.split("==")[1])
                     != pin.split("==")[1]]
            return True, [f"note: your lock's pins of packages your dependencies bring do not all "
                          f"fit the runtime; your direct dependencies' pins hold, these moved: "
                          f"{', '.join(moved)}"]
        done = retry
    # Nothing resolves: the project alone (without the runtime) says which versions its own
    # requirements force, and which of those lie outside the runtime's ranges.
    alone = resolver.compile(wanted[1:], list(held.values()) if len(held) < len(locked)
                             else list(locked.values()), [])
    if alone.returncode != 0:  # the project itself, or the index (unreachable, refused)
        return False, ["uv could not resolve your project even without the runtime:",
                       *alone.stderr.rstrip().splitlines()]
    got, parents = resolved(resolver.output())
    found = outside_ranges(got, parents, args.runtime, "needs")
    return False, ([f"conflict: {line}" for line in found]
                   + ["no environment holds both your project's requirements and the runtime's; "
                      "upgrade the packages named above in your project"] if found
                   else ["no environment holds both your project's requirements and the runtime's:",
                         *done.stderr.rstrip().splitlines()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="install.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("langgraph.json"),
                        help="the project's langgraph.json (default: ./langgraph.json)")
    parser.add_argument("--runtime", default="./runtime", help="the runtime's directory, with extras")
    parser.add_argument("--constraint", type=Path, required=True, help="the runtime's tested pins")
    parser.add_argument("--editable", action="store_true",
                        help="local packages and the runtime editable (a development environment)")
    parser.add_argument("--uv", help="uv's executable (default: the uv package, else uv on PATH)")
    parser.add_argument("--python-version", help="resolve for this Python version instead of "
                        "the running interpreter (with --resolve)")
    parser.add_argument("--print", action="store_true", dest="dry",
                        help="print what would be resolved; install nothing")
    parser.add_argument("--check", action="store_true",
                        help="only say whether the project's pins fit the runtime's ranges "
                        "(exit 2 if not)")
    parser.add_argument("--resolve", action="store_true",
                        help="only resolve, and say whether an environment holds both (exit 2 if not)")
    args = parser.parse_args(argv)
    try:
        args.config = args.config.resolve()
        pins = Pins.of(args.config)
        found = conflicts(args.config, args.runtime, pins)
        for line in found:
            print(f"install.py: conflict: {line}", file=sys.stderr)
        if found:  # before resolving: name each package, not only that something conflicts
            print("install.py: no environment holds both your project's pins and the runtime's "
                  "requirements; upgrade the packages named above in your project", file=sys.stderr)
            return 2
        if args.check:
            return 0
        if args.dry:
            for title, lines in (("requirements", requirements(args)),
                                 ("constraints (your lock)", list(pins.locked.values())),
                                 ("preferences (the runtime's tested pins)",
                                  preferences(args.constraint, pins.names))):
                print(f"# {title}", *lines, sep="\n")
            return 0
        target = (["--python-version", args.python_version] if args.python_version
                  else ["--python", sys.executable])
        with tempfile.TemporaryDirectory(prefix="agentgen-install-") as tmp:
            resolver = Resolver(find_uv(args.uv), Path(tmp), target)
            ok, lines = resolve(resolver, args, pins)
            for line in lines:
                print(f"install.py: {line}", file=sys.stderr)
            if not ok:
                print("install.py: nothing was installed", file=sys.stderr)
                return 2
            return 0 if args.resolve else resolver.install()
    except (InstallError, OSError) as exc:
        print(f"install.py: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
