"""compose.yaml against the compose-spec JSON Schema (vendored by check-jsonschema)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import yaml

from . import Context, Finding, finding
from ._schemas import schema_findings, vendored_validator

NAME = "compose-spec"
_NAMES = {"compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"}
SCHEMA = "compose-spec.json"


def matches(rel: PurePosixPath) -> bool:
    return rel.name in _NAMES or (rel.name.startswith("compose.") and rel.suffix in {".yaml", ".yml"})


def check(path: Path, ctx: Context) -> list[Finding]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return []  # reported by the syntax validator
    return [finding(ctx, path, NAME, message)
            for message in schema_findings(vendored_validator(SCHEMA), doc)]


def prepare() -> None:
    vendored_validator(SCHEMA)
