"""The GitHub Actions workflows every generated repository gets: valid against the github-workflow
schema, 0 failed checkov github_actions checks, pinned actions, and the jobs the issue asks for."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import yaml

from agentgen.validate import Context, validate_tree
from agentgen.validate import workflows as workflows_validator

from .servers import venv_tool

COMBINATIONS = [
    {"scale": "dev", "targets": ["compose"], "secrets": "env"},
    {"scale": "small", "targets": ["kubernetes"], "secrets": "sealed-secrets"},
    {"scale": "large", "targets": ["helm"], "secrets": "vault"},
    {"scale": "medium", "targets": ["compose", "kubernetes", "helm", "langgraph-platform"],
     "secrets": "aws-secrets-manager"},
]


def workflows(root):
    return {p.name: yaml.load(p.read_text(), Loader=yaml.BaseLoader)
            for p in sorted((root / ".github" / "workflows").glob("*.yml"))}


@pytest.mark.parametrize("answers", COMBINATIONS, ids=lambda a: f"{a['scale']}-{'+'.join(a['targets'])}")
def test_workflows_pass_schema_and_checkov(render, answers):
    root = render(answers)
    files = sorted((root / ".github" / "workflows").glob("*.yml"))
    assert [p.name for p in files] == ["agentgen-drift.yml", "ci.yml"]
    assert [str(f) for p in files for f in workflows_validator.check(p, Context(root))] == []

    checkov = venv_tool("checkov", "scripts/install-validators.sh")
    proc = subprocess.run([checkov, "-d", str(root), "--framework", "github_actions", "-o", "json",
                           "--skip-download"], capture_output=True, text=True, check=False,
                          env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    result = json.loads(proc.stdout)
    summary = result["summary"]
    assert summary["failed"] == 0, result["results"]["failed_checks"]
    assert summary["passed"] >= 16 and summary["parsing_errors"] == 0
    passed = {c["check_id"] for c in result["results"]["passed_checks"]}
    assert "CKV2_GHA_1" in passed  # top-level permissions are not write-all


def test_ci_runs_the_checks_each_target_needs(render):
    root = render(COMBINATIONS[3])
    ci, drift = workflows(root)["ci.yml"], workflows(root)["agentgen-drift.yml"]
    for workflow in (ci, drift):
        assert workflow["permissions"] == {"contents": "read"}
        for job in workflow["jobs"].values():
            for step in job["steps"]:
                if "uses" in step:  # third-party code runs pinned to a commit
                    assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step
    assert ci["jobs"]["test"]["services"]["postgres"]["image"].startswith("postgres:")
    runs = "\n".join(step.get("run", "") for job in ci["jobs"].values() for step in job["steps"])
    for command in ("ruff check", "pytest", "hadolint Dockerfile", "helm lint --strict",
                    "kubectl kustomize", "kubernetes-validate --strict", "checkov"):
        assert command in runs, command
    assert set(drift["on"]) == {"pull_request"}
    assert "agentgen check" in "\n".join(s.get("run", "") for s in drift["jobs"]["drift"]["steps"])


def test_compose_only_ci_has_no_kubernetes_steps(render):
    root = render(COMBINATIONS[0])
    text = (root / ".github" / "workflows" / "ci.yml").read_text()
    assert "helm" not in text and "kubectl" not in text and "hadolint Dockerfile" in text


def test_a_broken_workflow_is_reported(render):
    root = render(COMBINATIONS[0])
    path = root / ".github" / "workflows" / "ci.yml"
    path.write_text(path.read_text().replace("runs-on: ubuntu-24.04",
                                             "runs-on: [1, 2]\n    steps_typo: 1", 1))
    found = [str(f) for f in validate_tree(root).errors if f.validator == "github-workflows"]
    assert found and all(f.startswith(".github/workflows/ci.yml: [github-workflows] jobs") for f in found)
