"""Kubernetes and Helm targets: every scale x secrets backend passes strict schemas, helm lint,
the CRDs' validators and checkov (0 failed); the wrappers themselves fail when they should."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from agentgen.spec import Scale, SecretsBackend
from agentgen.validate import Level, validate_tree
from agentgen.validate._k8s import node_modules

from .servers import venv_tool

pytestmark = pytest.mark.renders

K8S_BACKENDS = [b.value for b in SecretsBackend if b is not SecretsBackend.ENV]
DIGEST = "sha256:" + "c" * 64


@pytest.fixture(scope="module")
def tools() -> dict[str, str]:
    """Every external validator, or a skip naming the install command."""
    found = {tool: venv_tool(tool, "scripts/install-validators.sh") for tool in
             ("helm", "kubectl", "checkov", "hadolint")}
    if not (node_modules() / "@kubernetes-models").is_dir():
        pytest.skip("@kubernetes-models packages missing (scripts/install-validators.sh)")
    return found


def render_k8s(render, scale="large", secrets="vault", **answers):
    return render({"scale": scale, "secrets": secrets, "targets": ["kubernetes", "helm"], **answers})


@pytest.mark.parametrize(("scale", "secrets"), list(itertools.product(
    [s.value for s in Scale], K8S_BACKENDS)))
def test_every_scale_and_backend_passes_every_validator(render, tools, scale, secrets):
    out = render_k8s(render, scale, secrets)
    report = validate_tree(out)
    assert report.errors == [] and report.skipped == []
    assert {"kubernetes", "helm", "checkov"} <= set(report.checked)
    assert report.checked["kubernetes"] == 3  # base, staging, production
    assert report.checked["checkov"] > 20


def test_with_a_digest_nothing_is_skipped(render, tools):
    out = render_k8s(render, scale="small", image_digest=DIGEST)
    assert validate_tree(out).errors == []
    for manifest in [kubectl_kustomize(tools, out, "production"), helm_template(tools, out)]:
        images = {c["image"] for doc in manifest for c in pod_containers(doc)}
        assert images == {f"ghcr.io/example/demo@{DIGEST}"}
        assert not any("checkov.io/skip1" in json.dumps(doc) for doc in manifest)


def test_without_a_digest_only_the_digest_check_is_skipped_with_a_reason(render, tools):
    out = render_k8s(render, scale="medium")
    for manifest in [kubectl_kustomize(tools, out, "production"), helm_template(tools, out)]:
        skips = [v for doc in manifest for k, v in (doc["metadata"].get("annotations") or {}).items()
                 if k.startswith("checkov.io/skip")]
        assert skips and all(re.match(r"CKV_K8S_43=\S.{20,}", s) for s in skips), skips


def kubectl_kustomize(tools, out: Path, overlay: str) -> list[dict]:
    proc = subprocess.run([tools["kubectl"], "kustomize", str(out / "deploy/kubernetes/overlays" / overlay)],
                          capture_output=True, text=True, check=True)
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def helm_template(tools, out: Path, *extra: str) -> list[dict]:
    proc = subprocess.run([tools["helm"], "template", "demo", str(out / "deploy/helm/demo"),
                           "--namespace", "demo", *extra], capture_output=True, text=True, check=True)
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def pod_containers(doc: dict) -> list[dict]:
    spec = doc.get("spec") or {}
    template = (spec.get("jobTemplate", {}).get("spec", {}).get("template")
                or spec.get("template") or (doc if doc.get("kind") == "Pod" else {}))
    return (template.get("spec") or {}).get("containers", [])


def test_workloads_are_hardened_everywhere(render, tools):
    out = render_k8s(render, scale="large")
    for manifest in [kubectl_kustomize(tools, out, "production"), helm_template(tools, out)]:
        pods = [doc for doc in manifest if pod_containers(doc)]
        assert {d["kind"] for d in pods} >= {"Deployment", "Job", "CronJob"}
        for doc in pods:
            spec = doc["spec"]
            pod = (spec.get("jobTemplate", {}).get("spec", {}).get("template") or spec.get("template")
                   or doc)["spec"]
            assert pod["automountServiceAccountToken"] is False
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
            for container in pod["containers"]:
                sc = container["securityContext"]
                assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
                assert sc["capabilities"]["drop"] == ["ALL"] and sc["runAsUser"] >= 10000
                assert "env" not in container or all("valueFrom" not in e for e in container["env"])
                assert {"requests", "limits"} <= set(container["resources"])
        deployment = next(d for d in manifest if d["kind"] == "Deployment")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        # The pod's grace period covers preStop and the runtime's shutdown grace (runs finish or
        # go back to the queue) with time to spare: Kubernetes never kills a draining pod.
        grace = _runtime_default("shutdown_grace_seconds")
        pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= (
            pre_stop + grace + 5)
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert container["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
        assert len(deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]) == 2
        hpa = next(d for d in manifest if d["kind"] == "HorizontalPodAutoscaler")
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
        assert hpa["spec"]["behavior"]["scaleUp"]["policies"] == [
            {"type": "Pods", "value": 2, "periodSeconds": 60}]
        assert hpa["spec"]["behavior"]["scaleDown"]["policies"][0]["value"] == 1
        kinds = {d["kind"] for d in manifest}
        assert {"NetworkPolicy", "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule",
                "ExternalSecret", "SecretStore", "Ingress"} <= kinds
        rules = next(d for d in manifest if d["kind"] == "PrometheusRule")
        alerts = {r["alert"] for g in rules["spec"]["groups"] for r in g["rules"]}
        assert alerts == {"AgentHighErrorRate", "AgentHighLatencyP95", "AgentPodRestarting",
                          "AgentDatabaseUnavailable", "AgentRunQueueBacklog", "AgentRunsAbandoned",
                          "AgentCronTicksFailing", "AgentWebhooksFailing"}


def _runtime_default(field: str) -> float:
    from agentgen_runtime.settings import Settings

    return Settings.model_fields[field].default


def test_dev_runs_postgres_in_the_cluster_and_small_does_not(render, tools):
    dev = kubectl_kustomize(tools, render_k8s(render, scale="dev", secrets="kubernetes"), "production")
    assert any(d["kind"] == "StatefulSet" for d in dev)
    small = render_k8s(render, scale="small", secrets="kubernetes")
    assert not any(d["kind"] == "StatefulSet" for d in kubectl_kustomize(tools, small, "production"))
    staging = kubectl_kustomize(tools, small, "staging")
    assert {d["metadata"].get("namespace") for d in staging if d["kind"] != "Namespace"} == {"demo-staging"}
    assert not any(d["kind"] == "PodDisruptionBudget" for d in staging)


def test_helm_values_schema_rejects_typos_and_wrong_types(render, tools, tmp_path):
    out = render_k8s(render)
    chart = out / "deploy/helm/demo"
    for name, text, needle in [
        ("typo.yaml", "replicaCout: 3\n", "replicaCout"),
        ("nested.yaml", "autoscaling:\n  maxReplica: 3\n", "maxReplica"),
        ("type.yaml", "replicaCount: three\n", "replicaCount"),
        ("enum.yaml", "secrets:\n  backend: keepass\n", "backend"),
    ]:
        values = tmp_path / name
        values.write_text(text)
        for cmd in ([tools["helm"], "lint", "--strict", str(chart), "--values", str(values)],
                    [tools["helm"], "template", "demo", str(chart), "--values", str(values)]):
            proc = subprocess.run(cmd, capture_output=True, text=True)
            assert proc.returncode != 0 and needle in proc.stdout + proc.stderr, (cmd, proc.stdout)
    bad_pdb = tmp_path / "pdb.yaml"
    bad_pdb.write_text("podDisruptionBudget:\n  minAvailable: 3\n")
    proc = subprocess.run([tools["helm"], "template", "demo", str(chart), "--values", str(bad_pdb)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "no node could ever be drained" in proc.stderr


def test_values_are_documented_word_for_word_in_the_schema(render):
    out = render_k8s(render)
    chart = out / "deploy/helm/demo"
    schema = json.loads((chart / "values.schema.json").read_text())
    values = yaml.safe_load((chart / "values.yaml").read_text())
    params = re.findall(r"^\s*## @param (\S+) (.+)$", (chart / "values.yaml").read_text(), re.M)
    assert len(params) > 40

    def leaves(node, prefix=""):
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) and value:
                yield from leaves(value, f"{path}.")
            else:
                yield path

    assert set(leaves(values)) == {key for key, _ in params}
    for key, description in params:
        node = schema
        for part in key.split("."):
            node = node["properties"][part]
        assert node["description"] == description, key


def test_checkov_wrapper_fails_on_a_broken_manifest(render, tools):
    out = render_k8s(render, scale="small")
    deployment = out / "deploy/kubernetes/base/deployment.yaml"
    text = deployment.read_text()
    deployment.write_text(text.replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")
                          .replace("imagePullPolicy: Always", "imagePullPolicy: IfNotPresent"))
    found = [str(f) for f in validate_tree(out).errors if f.validator == "checkov"]
    assert any("CKV_K8S_22" in f for f in found), found


def test_checkov_wrapper_fails_on_an_empty_render(render, tools):
    out = render({"targets": ["kubernetes"], "secrets": "kubernetes"})
    for overlay in ("staging", "production"):
        (out / f"deploy/kubernetes/overlays/{overlay}/kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n")
    errors = [str(f) for f in validate_tree(out).errors]
    assert any("[checkov]" in e and "rendered no objects" in e for e in errors), errors


def test_checkov_wrapper_refuses_a_skip_that_is_not_allowed(render, tools):
    out = render_k8s(render, scale="small", image_digest=DIGEST)
    deployment = out / "deploy/kubernetes/base/deployment.yaml"
    deployment.write_text(deployment.read_text().replace(
        "  labels:\n", "  annotations:\n    checkov.io/skip1: CKV_K8S_22=because\n  labels:\n", 1))
    errors = [str(f) for f in validate_tree(out).errors if f.validator == "checkov"]
    assert any("CKV_K8S_22 skipped" in e and "not allowed" in e for e in errors), errors


def test_custom_resources_are_checked_against_their_crds(render, tools):
    out = render({"targets": ["kubernetes"], "secrets": "vault"})
    secrets = out / "deploy/kubernetes/base/secrets.yaml"
    secrets.write_text(secrets.read_text().replace("version: v2", "version: v3"))
    errors = [str(f) for f in validate_tree(out).errors if f.validator == "kubernetes"]
    assert any("SecretStore/demo" in e and "version" in e for e in errors), errors


def test_strict_schemas_reject_unknown_fields(render, tools):
    out = render({"targets": ["kubernetes"], "secrets": "kubernetes"})
    service = out / "deploy/kubernetes/base/service.yaml"
    service.write_text(service.read_text().replace("  type: ClusterIP", "  type: ClusterIP\n  tpye: x"))
    errors = [str(f) for f in validate_tree(out).errors if f.validator == "kubernetes"]
    assert any("Service/demo" in e and "tpye" in e for e in errors), errors


def test_missing_tools_are_reported_as_skipped(render, monkeypatch):
    from agentgen.validate import _k8s, checkov, helm

    for module in (_k8s, checkov, helm):
        monkeypatch.setattr(module, "which", lambda tool: None)
    report = validate_tree(render({"targets": ["kubernetes", "helm"], "secrets": "kubernetes"}))
    assert report.errors == []
    skipped = {f.validator for f in report.findings if f.level is Level.SKIPPED}
    assert {"kubernetes", "helm", "checkov"} <= skipped
