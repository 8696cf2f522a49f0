"""Each kustomize overlay (and the base) is built by `kubectl kustomize`; every object it yields is
checked by `_k8s.check_documents`. All are started at once (`prefetch`) and run side by side."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from ._base import Context, Finding, finding, skipped, tool_missing
from ._k8s import INSTALL_TOOLS, kustomize

NAME = "kubernetes"


def matches(rel: PurePosixPath) -> bool:
    return (rel.name == "kustomization.yaml" and len(rel.parts) >= 3
            and rel.parts[:2] == ("deploy", "kubernetes"))


def prefetch(ctx: Context, files: list[PurePosixPath]) -> None:
    for rel in files:
        if matches(rel):
            kustomize(ctx, (ctx.root / rel).parent)


def check(path: Path, ctx: Context) -> list[Finding]:
    rendered = kustomize(ctx, path.parent).result()
    if rendered.docs is None:
        if rendered.error is None:
            return [tool_missing(NAME, "kubectl", INSTALL_TOOLS)]
        return [finding(ctx, path, NAME, f"kubectl kustomize failed: {rendered.error}")]
    if not rendered.docs:
        return [finding(ctx, path, NAME, "kubectl kustomize rendered no objects")]
    return ([finding(ctx, path, NAME, p) for p in rendered.problems]
            + [skipped(NAME, reason) for reason in rendered.skipped])
