"""checkov over what is deployed: the rendered kustomize overlays and Helm charts (scanned as
Kubernetes objects, with the chart's namespace), and the Dockerfile. 0 failed checks are allowed.
The one tolerated skip is CKV_K8S_43 (image by digest) while no digest was given, written as an
annotation with its reason in the generated repository; with a digest, no skip at all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path, PurePosixPath

import yaml

from . import Context, Finding, skipped, tool_missing
from ._k8s import INSTALL_TOOLS, helm_template, kustomize, run
from ._tools import which

NAME = "checkov"
TOLERATED_WITHOUT_DIGEST = {"CKV_K8S_43"}


def _manifests(ctx: Context, files: list[PurePosixPath]) -> dict[str, list]:
    """Rendered manifests by file name; failures to render are other validators' to report."""
    from .helm import namespace

    manifests: dict[str, list] = {}
    for rel in files:
        if rel.name == "kustomization.yaml" and rel.parts[:3] == ("deploy", "kubernetes", "overlays"):
            docs, _ = kustomize(ctx, ctx.root / rel.parent)
            if docs:
                manifests[f"kustomize-{rel.parent.name}.yaml"] = docs
        elif rel.name == "Chart.yaml" and len(rel.parts) == 4 and rel.parts[:2] == ("deploy", "helm"):
            docs, _ = helm_template(ctx, ctx.root / rel.parent, namespace(ctx))
            if docs:
                manifests[f"helm-{rel.parent.name}.yaml"] = docs
    return manifests


def check_tree(ctx: Context, files: list[PurePosixPath]) -> tuple[list[Finding], int]:
    # checkov takes seconds: it runs for projects that deploy to Kubernetes (where its checks matter
    # most); a compose-only project's Dockerfile is covered by hadolint.
    if not any(rel.parts[:2] in {("deploy", "kubernetes"), ("deploy", "helm")} for rel in files):
        return [], 0
    dockerfiles = [rel for rel in files if rel.name == "Dockerfile"]
    checkov = which("checkov")
    if checkov is None:
        return [tool_missing(NAME, "checkov", INSTALL_TOOLS)], 0
    manifests = _manifests(ctx, files)
    if not manifests:
        return [skipped(NAME, "no rendered Kubernetes manifests to scan (kubectl/helm missing?)")], 0
    with tempfile.TemporaryDirectory(prefix="agentgen-checkov-") as scan:
        for name, docs in manifests.items():
            Path(scan, name).write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
        for rel in dockerfiles:
            target = Path(scan, "docker", *rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ctx.root / rel, target)
        frameworks = ["kubernetes"] + (["dockerfile"] if dockerfiles else [])
        proc = run([checkov, "-d", scan, "--framework", *frameworks, "-o", "json",
                    "--skip-download"], env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    return _findings(proc, bool(ctx.answers.get("image_digest")), frameworks)


def _findings(proc: subprocess.CompletedProcess[str], has_digest: bool,
              frameworks: list[str]) -> tuple[list[Finding], int]:
    try:
        reports = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return [Finding("*", NAME, f"checkov failed: {(proc.stderr or proc.stdout).strip()[-400:]}")], 0
    reports = reports if isinstance(reports, list) else [reports]
    by_type = {r.get("check_type"): r for r in reports}
    found: list[Finding] = []
    resources = 0
    for framework in frameworks:
        report = by_type.get(framework)
        count = report["summary"]["resource_count"] if report else 0
        if count == 0:
            found.append(Finding("*", NAME, f"checkov scanned 0 {framework} resources: the render "
                                            "is empty or checkov could not parse it"))
            continue
        resources += count
        for failed in report["results"].get("failed_checks", []):
            found.append(Finding(_where(failed), NAME, f"{failed['check_id']} {failed['check_name']} "
                                                        f"({failed['resource']})"))
        for skip in report["results"].get("skipped_checks", []):
            if has_digest or skip["check_id"] not in TOLERATED_WITHOUT_DIGEST:
                found.append(Finding(_where(skip), NAME, f"{skip['check_id']} skipped "
                                                          f"({skip['resource']}), which is not allowed"))
    return found, resources


def _where(result: dict) -> str:
    path = str(result.get("file_path", "*")).lstrip("/")
    return path.removeprefix("docker/") if path.startswith("docker/") else f"(rendered) {path}"
