"""Each kustomize overlay (and the base) is built by `kubectl kustomize`; every object it yields is
checked by `_k8s.check_documents`."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from . import Context, Finding, finding, skipped, tool_missing
from ._k8s import INSTALL_TOOLS, check_documents, kustomize

NAME = "kubernetes"


def matches(rel: PurePosixPath) -> bool:
    return (rel.name == "kustomization.yaml" and len(rel.parts) >= 3
            and rel.parts[:2] == ("deploy", "kubernetes"))


def check(path: Path, ctx: Context) -> list[Finding]:
    docs, error = kustomize(ctx, path.parent)
    if docs is None:
        if error is None:
            return [tool_missing(NAME, "kubectl", INSTALL_TOOLS)]
        return [finding(ctx, path, NAME, f"kubectl kustomize failed: {error}")]
    if not docs:
        return [finding(ctx, path, NAME, "kubectl kustomize rendered no objects")]
    problems, skipped_reasons = check_documents(docs)
    return ([finding(ctx, path, NAME, p) for p in problems]
            + [skipped(NAME, reason) for reason in skipped_reasons])
