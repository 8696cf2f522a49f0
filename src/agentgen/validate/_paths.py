"""Path predicates shared by validators."""

from __future__ import annotations

from pathlib import PurePosixPath


def is_helm_template(rel: PurePosixPath) -> bool:
    """Files under a chart's `templates/` are Go templates, not YAML until helm renders them."""
    parts = rel.parts
    return len(parts) >= 4 and parts[0] == "deploy" and parts[1] == "helm" and "templates" in parts[3:]


def is_overlay(rel: PurePosixPath) -> bool:
    """A kustomize overlay's kustomization.yaml (what gets deployed)."""
    return rel.name == "kustomization.yaml" and rel.parts[:3] == ("deploy", "kubernetes", "overlays")


def is_chart(rel: PurePosixPath) -> bool:
    """A Helm chart's Chart.yaml, deploy/helm/<chart>/Chart.yaml."""
    return rel.name == "Chart.yaml" and len(rel.parts) == 4 and rel.parts[:2] == ("deploy", "helm")


def is_workflow(rel: PurePosixPath) -> bool:
    """A GitHub Actions workflow, .github/workflows/*.yml."""
    return rel.parent == PurePosixPath(".github/workflows") and rel.suffix in {".yml", ".yaml"}
