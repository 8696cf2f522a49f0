"""Kubernetes manifests, however they were rendered (kustomize, helm), checked document by document:
built-in kinds with kubernetes-validate's strict schemas for every supported Kubernetes version,
custom resources with the validators @kubernetes-models generates from the projects' published CRDs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import Future
from dataclasses import dataclass, field
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


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it


def load_documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.load_all(text, Loader=_Loader) if isinstance(doc, dict)]


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


@cache
def _strict_validator(version: str, api_version: str, kind: str) -> Any:
    """kubernetes-validate's strict schema for one kind in one Kubernetes version, as a reusable
    jsonschema validator: the library re-reads the kind's schema and the 2 MB `_definitions.json`
    for every document it validates (1.5 s of the 2.9 s a Kubernetes target took); this is its
    `validate` with the schemas and the resolved references kept for the process.
    Raises kubernetes_validate.SchemaNotFoundError for a kind the version does not have."""
    import jsonschema
    from referencing import Registry, Resource

    kv = _kubernetes_validate()
    utils = kv.utils
    schema_version = [v for v in utils.all_versions()
                      if utils.major_minor(v) <= utils.major_minor(version)][-1]
    schema_dir = f"v{schema_version}-local-strict"
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = utils.schema_contents(
            f"kubernetes-json-schema/{schema_dir}/{kind.lower()}-{group}.json", version)
    except FileNotFoundError:
        raise kv.SchemaNotFoundError(version=version, kind=kind, api_version=api_version) from None
    definitions = _definitions(schema_dir, version)
    registry = Resource.from_contents(schema) @ (definitions @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


@cache
def _definitions(schema_dir: str, version: str) -> Any:
    from referencing import Resource

    utils = _kubernetes_validate().utils
    return Resource.from_contents(
        utils.schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", version))


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
                error = _strict_error(doc, version)
            except kv.SchemaNotFoundError:
                problems.append(f"{describe(doc)}: no schema for {key[0]} {key[1]} in Kubernetes "
                                f"{version} (unknown or removed API)")
                break
            if error is not None:
                where = ".".join(str(p) for p in error.path) or "(root)"
                problems.append(f"{describe(doc)}: Kubernetes {version}: {where}: {error.message}")
                break
    skipped: list[str] = []
    if custom:
        custom_problems, reason = _check_custom(custom)
        problems += custom_problems
        if reason:
            skipped.append(reason)
    return problems, skipped


def _strict_error(doc: dict[str, Any], version: str) -> Any:
    """The error kubernetes_validate.validate(doc, version, strict=True) would raise, or None."""
    import jsonschema

    validator = _strict_validator(version, str(doc.get("apiVersion")), str(doc.get("kind")))
    return jsonschema.exceptions.best_match(validator.iter_errors(doc))


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


@dataclass(frozen=True)
class Rendered:
    """A kustomize/helm render: its objects, already checked by `check_documents` (problems and
    skipped reasons); or `error` when rendering failed; neither when the tool is missing."""

    docs: list[dict[str, Any]] | None
    error: str | None = None
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _rendered(ctx: Any, key: str, tool: str, args: list[str]) -> Future[Rendered]:
    """Started once per context (see `Context.started`), rendered and checked on a thread of its
    pool, so that renders (and the node process checking custom resources) run side by side: the
    kubernetes, helm and checkov validators share each one."""
    def work() -> Rendered:
        executable = which(tool)
        if executable is None:
            return Rendered(None)
        proc = run([executable, *args])
        if proc.returncode != 0:
            return Rendered(None, " ".join(proc.stderr.split())[-400:])
        docs = load_documents(proc.stdout)
        problems, skipped = check_documents(docs)
        return Rendered(docs, None, problems, skipped)

    return ctx.started(key, work)


def kustomize(ctx: Any, directory: Path) -> Future[Rendered]:
    """`kubectl kustomize` of a directory, started (wait with `.result()`)."""
    return _rendered(ctx, f"kustomize:{directory}", "kubectl", ["kustomize", str(directory)])


def helm_template(ctx: Any, chart: Path, namespace: str) -> Future[Rendered]:
    """`helm template` of a chart with its namespace set, as a real install would; started."""
    return _rendered(ctx, f"helm:{chart}:{namespace}", "helm",
                     ["template", chart.name, str(chart), "--namespace", namespace,
                      "--kube-version", f"{KUBE_VERSIONS[0]}.0"])
