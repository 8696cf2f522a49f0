"""GitHub Actions workflows against SchemaStore's github-workflow schema (vendored by
check-jsonschema). checkov's github_actions checks run in the checkov validator."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import yaml

from ._base import Context, Finding, finding
from ._paths import is_workflow
from ._schemas import schema_findings, vendored_validator

NAME = "github-workflows"
SCHEMA = "github-workflows.json"


class _Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2 booleans, as GitHub reads workflows: `on:` is the key "on", not True."""


_BOOL = "tag:yaml.org,2002:bool"
_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                    list("tTfF"))


def matches(rel: PurePosixPath) -> bool:
    return is_workflow(rel)


def check(path: Path, ctx: Context) -> list[Finding]:
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_Yaml12Loader)  # noqa: S506
    except yaml.YAMLError:
        return []  # reported by the syntax validator
    return [finding(ctx, path, NAME, message)
            for message in schema_findings(vendored_validator(SCHEMA), doc)]


def prepare() -> None:
    vendored_validator(SCHEMA)
