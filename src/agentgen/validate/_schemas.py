"""JSON Schemas that check-jsonschema vendors from their upstreams (compose-spec, SchemaStore)."""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path
from typing import Any


@cache
def vendored_validator(filename: str) -> Any:
    """A jsonschema validator for check-jsonschema's vendored `filename` (e.g. compose-spec.json)."""
    from jsonschema.validators import validator_for

    # find_spec locates the package without importing it (its CLI costs ~0.25 s of imports).
    spec = importlib.util.find_spec("check_jsonschema")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("check-jsonschema is not installed (pip install check-jsonschema)")
    vendor = Path(next(iter(spec.submodule_search_locations))) / "builtin_schemas" / "vendor"
    schema = json.loads((vendor / filename).read_text(encoding="utf-8"))
    return validator_for(schema)(schema)


def schema_findings(validator: Any, doc: Any) -> list[str]:
    """Every schema error of `doc`, as "where: message", in document order."""
    return [f"{'.'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
            for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))]
