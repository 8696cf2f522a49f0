"""checkov over what is deployed: the rendered kustomize overlays and Helm charts (scanned as
Kubernetes objects, with the chart's namespace), the Dockerfile and the GitHub workflows. 0 failed
checks are allowed.
The one tolerated skip is CKV_K8S_43 (image by digest) on an object whose images are not pinned by
digest, written as an annotation with its reason in the generated repository; any other skip, or a
skip on an object whose images all have digests, is an error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path, PurePosixPath

import yaml

from . import Context, Finding, tool_missing
from ._k8s import INSTALL_TOOLS, helm_template, kustomize, run
from ._paths import is_chart, is_overlay, is_workflow
from ._tools import which

NAME = "checkov"
TOLERATED_WITHOUT_DIGEST = "CKV_K8S_43"


def _manifests(ctx: Context, files: list[PurePosixPath]) -> tuple[dict[str, list], bool]:
    """Rendered manifests by file name, and whether a renderer (kubectl, helm) was missing.
    Failures to render are the kubernetes and helm validators' to report."""
    from .helm import namespace

    manifests: dict[str, list] = {}
    missing_tool = False
    for rel in files:
        if is_overlay(rel):
            docs, error = kustomize(ctx, ctx.root / rel.parent)
            name = f"kustomize-{rel.parent.name}.yaml"
        elif is_chart(rel):
            docs, error = helm_template(ctx, ctx.root / rel.parent, namespace(ctx))
            name = f"helm-{rel.parent.name}.yaml"
        else:
            continue
        missing_tool |= docs is None and error is None
        if docs:
            manifests[name] = docs
    return manifests, missing_tool


def _pinned(manifests: dict[str, list]) -> set[str]:
    """checkov's ids (Kind.namespace.name) of the objects whose every image is pinned by digest."""
    pinned = set()
    for docs in manifests.values():
        for doc in docs:
            images = _images(doc)
            if images and all("@sha256:" in image for image in images):
                meta = doc.get("metadata") or {}
                pinned.add(f"{doc.get('kind')}.{meta.get('namespace', 'default')}.{meta.get('name')}")
    return pinned


def _images(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["image"]] if isinstance(node.get("image"), str) else []
        return found + [image for value in node.values() for image in _images(value)]
    if isinstance(node, list):
        return [image for item in node for image in _images(item)]
    return []


def check_tree(ctx: Context, files: list[PurePosixPath]) -> tuple[list[Finding], int]:
    # checkov takes seconds: it runs for projects that deploy to Kubernetes (where its checks matter
    # most); a compose-only project's Dockerfile is covered by hadolint.
    if not any(is_overlay(rel) or is_chart(rel) for rel in files):
        return [], 0
    dockerfiles = [rel for rel in files if rel.name == "Dockerfile"]
    checkov = which("checkov")
    if checkov is None:
        return [tool_missing(NAME, "checkov", INSTALL_TOOLS)], 0
    manifests, missing_tool = _manifests(ctx, files)
    if missing_tool:
        return [tool_missing(NAME, "kubectl or helm (needed to render what checkov scans)",
                             INSTALL_TOOLS)], 0
    if not manifests:
        return [Finding("*", NAME, "the Kubernetes manifests rendered no objects: nothing to scan")], 0
    with tempfile.TemporaryDirectory(prefix="agentgen-checkov-") as scan:
        for name, docs in manifests.items():
            Path(scan, name).write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
        for rel in dockerfiles:
            target = Path(scan, "docker", *rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ctx.root / rel, target)
        workflows = [rel for rel in files if is_workflow(rel)]
        for rel in workflows:
            target = Path(scan, *rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ctx.root / rel, target)
        frameworks = (["kubernetes"] + (["dockerfile"] if dockerfiles else [])
                      + (["github_actions"] if workflows else []))
        proc = run([checkov, "-d", scan, "--framework", *frameworks, "-o", "json",
                    "--skip-download"], env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    return _findings(proc, _pinned(manifests), frameworks)


def _findings(proc: subprocess.CompletedProcess[str], pinned: set[str],
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
        summary = report["summary"] if report else {}
        count = summary.get("resource_count", 0)
        # github_actions reports no resource_count: that it ran checks is the evidence it parsed.
        ran = count or sum(summary.get(key, 0) for key in ("passed", "failed", "skipped"))
        if not ran:
            found.append(Finding("*", NAME, f"checkov scanned 0 {framework} resources: the render "
                                            "is empty or checkov could not parse it"))
            continue
        resources += count
        for failed in report["results"].get("failed_checks", []):
            found.append(Finding(_where(failed), NAME, f"{failed['check_id']} {failed['check_name']} "
                                                        f"({failed['resource']})"))
        for skip in report["results"].get("skipped_checks", []):
            if skip["check_id"] != TOLERATED_WITHOUT_DIGEST or skip["resource"] in pinned:
                found.append(Finding(_where(skip), NAME, f"{skip['check_id']} skipped "
                                                          f"({skip['resource']}), which is not allowed"))
    return found, resources


def _where(result: dict) -> str:
    path = str(result.get("file_path", "*")).lstrip("/")
    return path.removeprefix("docker/") if path.startswith("docker/") else f"(rendered) {path}"
