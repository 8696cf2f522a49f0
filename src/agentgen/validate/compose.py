"""compose.yaml against the compose-spec JSON Schema (vendored by check-jsonschema)."""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from . import Context, Finding, finding

NAME = "compose-spec"
_NAMES = {"compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"}


def matches(rel: PurePosixPath) -> bool:
    return rel.name in _NAMES or (rel.name.startswith("compose.") and rel.suffix in {".yaml", ".yml"})


@cache
def _validator() -> Any:
    from jsonschema.validators import validator_for

    # find_spec locates the package without importing it (its CLI costs ~0.25 s of imports).
    spec = importlib.util.find_spec("check_jsonschema")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("check-jsonschema is not installed (pip install check-jsonschema)")
    vendor = Path(next(iter(spec.submodule_search_locations))) / "builtin_schemas" / "vendor"
    schema = json.loads((vendor / "compose-spec.json").read_text(encoding="utf-8"))
    return validator_for(schema)(schema)


def check(path: Path, ctx: Context) -> list[Finding]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return []  # reported by the syntax validator
    found = []
    for error in sorted(_validator().iter_errors(doc), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in error.absolute_path) or "(root)"
        found.append(finding(ctx, path, NAME, f"{where}: {error.message}"))
    return found


def prepare() -> None:
    _validator()
