"""checkov over what is deployed: the rendered kustomize overlays and Helm charts (scanned as
Kubernetes objects, with the chart's namespace), the Dockerfile and the GitHub workflows. 0 failed
checks are allowed.
The one tolerated skip is CKV_K8S_43 (image by digest) on an object whose images are not pinned by
digest, written as an annotation with its reason in the generated repository; any other skip, or a
skip on an object whose images all have digests, is an error."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path, PurePosixPath

import yaml

from .._git import tool_environment
from ._base import Context, Finding, tool_missing
from ._k8s import INSTALL_TOOLS, helm_template, kustomize, run
from ._paths import is_chart, is_overlay, is_workflow
from ._tools import which

NAME = "checkov"
TOLERATED_WITHOUT_DIGEST = "CKV_K8S_43"
FILES = "files"  # where the project's own files (Dockerfiles, workflows) are staged for the scan


def _manifests(ctx: Context, files: list[PurePosixPath]) -> tuple[dict[str, list], bool]:
    """Rendered manifests by file name, and whether a renderer (kubectl, helm) was missing.
    Failures to render are the kubernetes and helm validators' to report."""
    from .helm import namespace

    manifests: dict[str, list] = {}
    missing_tool = False
    for rel in files:
        if is_overlay(rel):
            rendered = kustomize(ctx, ctx.root / rel.parent).result()
            name = f"kustomize-{rel.parent.name}.yaml"
        elif is_chart(rel):
            rendered = helm_template(ctx, ctx.root / rel.parent, namespace(ctx)).result()
            name = f"helm-{rel.parent.name}.yaml"
        else:
            continue
        missing_tool |= rendered.docs is None and rendered.error is None
        if rendered.docs:
            manifests[name] = rendered.docs
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
    return scan([(ctx, files)])[0]


def scan(trees: list[tuple[Context, list[PurePosixPath]]]) -> list[tuple[list[Finding], int]]:
    """checkov once over several rendered trees (each staged in a directory of its own: checkov's
    start-up is most of its time), the findings and resource count of each, in order."""
    checkov = which("checkov")
    if checkov is None:
        return [([tool_missing(NAME, "checkov", INSTALL_TOOLS)], 0) for _ in trees]
    results: list[tuple[list[Finding], int] | None] = [None] * len(trees)
    staged: dict[int, tuple[set[str], list[str]]] = {}
    with tempfile.TemporaryDirectory(prefix="agentgen-checkov-") as directory:
        for index, (ctx, files) in enumerate(trees):
            outcome = _stage(ctx, files, Path(directory, str(index)))
            if isinstance(outcome, list):
                results[index] = (outcome, 0)
            else:
                staged[index] = outcome
        if staged:
            frameworks = sorted({f for _, used in staged.values() for f in used})
            proc = run([checkov, "-d", directory, "--framework", *frameworks, "-o", "json",
                        "--skip-download"], env=tool_environment(BC_SKIP_MAPPING="TRUE"))
            for index, (pinned, used) in staged.items():
                results[index] = _findings(proc, pinned, used, f"/{index}/")
    return [result or ([], 0) for result in results]


def _stage(ctx: Context, files: list[PurePosixPath],
           scan_dir: Path) -> list[Finding] | tuple[set[str], list[str]]:
    """Write what checkov scans for one tree under scan_dir: (pinned objects, frameworks), or the
    findings that say why there is nothing to scan."""
    dockerfiles = [rel for rel in files if rel.name == "Dockerfile"]
    manifests, missing_tool = _manifests(ctx, files)
    if missing_tool:
        return [tool_missing(NAME, "kubectl or helm (needed to render what checkov scans)",
                             INSTALL_TOOLS)]
    if not manifests:
        return [Finding("*", NAME, "the Kubernetes manifests rendered no objects: nothing to scan")]
    scan_dir.mkdir(parents=True)
    for name, docs in manifests.items():
        Path(scan_dir, name).write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
    workflows = [rel for rel in files if is_workflow(rel)]
    for rel in [*dockerfiles, *workflows]:  # under files/: findings name the project's own path
        target = Path(scan_dir, FILES, *rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ctx.root / rel, target)
    frameworks = (["kubernetes"] + (["dockerfile"] if dockerfiles else [])
                  + (["github_actions"] if workflows else []))
    return _pinned(manifests), frameworks


def _findings(proc: subprocess.CompletedProcess[str], pinned: set[str], frameworks: list[str],
              prefix: str) -> tuple[list[Finding], int]:
    """The findings of one staged tree: checkov's results whose file path starts with prefix."""
    try:
        reports = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return [Finding("*", NAME, f"checkov failed: {(proc.stderr or proc.stdout).strip()[-400:]}")], 0
    reports = reports if isinstance(reports, list) else [reports]
    by_type = {r.get("check_type"): r for r in reports}
    found: list[Finding] = []
    resources = 0
    for framework in frameworks:
        report = by_type.get(framework) or {"results": {}}
        results = {kind: [r for r in report["results"].get(kind, [])
                          if str(r.get("file_path", "")).startswith(prefix)]
                   for kind in ("passed_checks", "failed_checks", "skipped_checks")}
        count = len({(r.get("file_path"), r.get("resource")) for checks in results.values()
                     for r in checks})
        if not count:
            found.append(Finding("*", NAME, f"checkov scanned 0 {framework} resources: the render "
                                            "is empty or checkov could not parse it"))
            continue
        resources += count
        for failed in results["failed_checks"]:
            found.append(Finding(_where(failed, prefix), NAME,
                                 f"{failed['check_id']} {failed['check_name']} ({failed['resource']})"))
        for skip in results["skipped_checks"]:
            if skip["check_id"] != TOLERATED_WITHOUT_DIGEST or skip["resource"] in pinned:
                found.append(Finding(_where(skip, prefix), NAME,
                                     f"{skip['check_id']} skipped ({skip['resource']}), "
                                     "which is not allowed"))
    return found, resources


def _where(result: dict, prefix: str) -> str:
    path = str(result.get("file_path", "*")).removeprefix(prefix)
    return path.removeprefix(f"{FILES}/") if path.startswith(f"{FILES}/") else f"(rendered) {path}"
