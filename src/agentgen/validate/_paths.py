"""Path predicates shared by validators."""

from __future__ import annotations

from pathlib import PurePosixPath


def is_helm_template(rel: PurePosixPath) -> bool:
    """Files under a chart's `templates/` are Go templates, not YAML until helm renders them."""
    parts = rel.parts
    return len(parts) >= 4 and parts[0] == "deploy" and parts[1] == "helm" and "templates" in parts[3:]
