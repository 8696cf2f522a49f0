"""Every JSON, YAML and TOML file is well-formed (Helm's Go templates excepted)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path, PurePosixPath

import yaml

from ._base import Context, Finding, finding
from ._paths import is_helm_template

NAME = "syntax"
_SUFFIXES = {".json", ".yaml", ".yml", ".toml"}


def matches(rel: PurePosixPath) -> bool:
    return rel.suffix in _SUFFIXES and not is_helm_template(rel)


def check(path: Path, ctx: Context) -> list[Finding]:
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            json.loads(text)
        elif path.suffix == ".toml":
            tomllib.loads(text)
        else:
            list(yaml.safe_load_all(text))
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        message = " ".join(str(exc).split())
        return [finding(ctx, path, NAME, f"not well-formed: {message}")]
    return []
