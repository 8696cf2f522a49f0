"""Kubernetes manifests, however they were rendered (kustomize, helm), checked document by document:
built-in kinds with kubernetes-validate's strict schemas for every supported Kubernetes version,
custom resources with the validators @kubernetes-models generates from the projects' published CRDs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ._tools import which

KUBE_VERSIONS = ("1.30", "1.35")
INSTALL_TOOLS = "run scripts/install-validators.sh from agentgen's repository"
CRD_MODELS = {
    ("external-secrets.io/v1", "ExternalSecret"):
        "@kubernetes-models/external-secrets/external-secrets.io/v1/ExternalSecret.js",
    ("external-secrets.io/v1", "SecretStore"):
        "@kubernetes-models/external-secrets/external-secrets.io/v1/SecretStore.js",
    ("bitnami.com/v1alpha1", "SealedSecret"):
        "@kubernetes-models/sealed-secrets/bitnami.com/v1alpha1/SealedSecret.js",
    ("monitoring.coreos.com/v1", "ServiceMonitor"):
        "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js",
    ("monitoring.coreos.com/v1", "PrometheusRule"):
        "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule.js",
}


def node_modules() -> Path:
    """Where scripts/install-validators.sh puts the @kubernetes-models packages."""
    return Path(os.environ.get("AGENTGEN_NODE_MODULES")
                or Path(sys.prefix) / "share" / "agentgen" / "node_modules")


def run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)


def load_documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]


def describe(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind', '?')}/{meta.get('name', '?')}"


@cache
def _kubernetes_validate() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        return None
    return kubernetes_validate


def check_documents(docs: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Return (problems, skipped reasons) for rendered manifests."""
    kv = _kubernetes_validate()
    if kv is None:
        return [], ["kubernetes-validate is not installed (pip install kubernetes-validate)"]
    problems: list[str] = []
    custom: list[tuple[dict[str, Any], str]] = []
    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key in CRD_MODELS:
            custom.append((doc, CRD_MODELS[key]))  # type: ignore[index]
            continue
        for version in KUBE_VERSIONS:
            try:
                kv.validate(doc, version, strict=True)
            except kv.SchemaNotFoundError:
                problems.append(f"{describe(doc)}: no schema for {key[0]} {key[1]} in Kubernetes "
                                f"{version} (unknown or removed API)")
                break
            except kv.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path) or "(root)"
                problems.append(f"{describe(doc)}: Kubernetes {version}: {where}: {exc.message}")
                break
    skipped: list[str] = []
    if custom:
        custom_problems, reason = _check_custom(custom)
        problems += custom_problems
        if reason:
            skipped.append(reason)
    return problems, skipped


def _check_custom(items: list[tuple[dict[str, Any], str]]) -> tuple[list[str], str | None]:
    node = which("node")
    modules = node_modules()
    if node is None:
        return [], "node is not installed (apt-get install nodejs), so custom resources were not checked"
    if not (modules / "@kubernetes-models").is_dir():
        return [], f"@kubernetes-models packages not found in {modules} ({INSTALL_TOOLS})"
    payload = [{"module": module, "kind": doc["kind"], "doc": doc} for doc, module in items]
    proc = subprocess.run([node, str(Path(__file__).with_name("crd_validate.mjs")), str(modules)],
                          input=json.dumps(payload), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return [f"custom resource validation failed to run: {proc.stderr.strip()[-300:]}"], None
    results = json.loads(proc.stdout)
    return [f"{describe(doc)}: {error}" for (doc, _), error in zip(items, results, strict=True)
            if error], None


def _rendered(ctx: Any, key: str, tool: str, args: list[str]) -> tuple[list[dict[str, Any]] | None,
                                                                     str | None]:
    """(objects, None); (None, error) when rendering fails; (None, None) when the tool is missing.
    Cached in the context: the kubernetes, helm and checkov validators share each render."""
    if key not in ctx.renders:
        executable = which(tool)
        if executable is None:
            ctx.renders[key] = (None, None)
        else:
            proc = run([executable, *args])
            ctx.renders[key] = ((load_documents(proc.stdout), None) if proc.returncode == 0
                                else (None, " ".join(proc.stderr.split())[-400:]))
    return ctx.renders[key]


def kustomize(ctx: Any, directory: Path) -> tuple[list[dict[str, Any]] | None, str | None]:
    return _rendered(ctx, f"kustomize:{directory}", "kubectl", ["kustomize", str(directory)])


def helm_template(ctx: Any, chart: Path, namespace: str) -> tuple[list[dict[str, Any]] | None, str | None]:
    """`helm template` of a chart with its namespace set, as a real install would."""
    return _rendered(ctx, f"helm:{chart}:{namespace}", "helm",
                     ["template", chart.name, str(chart), "--namespace", namespace,
                      "--kube-version", f"{KUBE_VERSIONS[0]}.0"])
