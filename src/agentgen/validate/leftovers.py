"""No unrendered Jinja (`{{`, `{%`) left in generated files.

Helm's Go templates, GitHub Actions' `${{ }}` expressions and the user's own free text (which renders
literally, whatever it contains) are not leftovers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath

from ._base import Context, Finding, finding
from ._paths import is_helm_template

NAME = "unrendered-jinja"
_MARKERS = re.compile(r"\{\{|\{%")
_ACTIONS_EXPR = re.compile(r"\$\{\{.*?\}\}", re.DOTALL)


def matches(rel: PurePosixPath) -> bool:
    return not is_helm_template(rel) and rel.name != ".copier-answers.yml"


def _free_text(ctx: Context) -> list[str]:
    """The user's own strings and the escaped forms they take in generated JSON/YAML/TOML."""
    forms: set[str] = set()
    for value in ctx.answers.values():
        if isinstance(value, str) and _MARKERS.search(value):
            for text in (value, dockerfile_label(value)):
                forms.update({text, json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]})
    return sorted(forms, key=len, reverse=True)


def dockerfile_label(text: str) -> str:
    """The description as Dockerfile.jinja writes it into the image label (no backslashes, double
    quotes or line breaks: Dockerfile linters misparse their escapes)."""
    return (text.replace("\\", "/").replace('"', "'").replace("\r", " ").replace("\n", " ")
            .replace("\t", " "))


def check(path: Path, ctx: Context) -> list[Finding]:
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return []  # binary files carry no template syntax
    for literal in _free_text(ctx):  # first: the user's text may itself hold `${{ }}`
        text = text.replace(literal, "")
    text = _ACTIONS_EXPR.sub("", text)
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if _MARKERS.search(line):
            found.append(finding(ctx, path, NAME, f"line {lineno}: unrendered template syntax: "
                                                  f"{line.strip()[:80]}"))
    return found
