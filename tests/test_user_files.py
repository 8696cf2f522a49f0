"""Validation judges agentgen's files only: what checkov or the leftover check find in the user's
own files (a workflow with `permissions: write-all`, prompts written with `{{ }}`) is a note, never
a failure of init or validate; in agentgen's own files it still fails."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.renders

FIXTURES = Path(__file__).parent / "fixtures" / "byo"
USER_WORKFLOW = """name: ours
on: [push]
permissions: write-all
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - run: echo "{{ not ours to judge }}"
"""
PROMPTS = '''"""The agent's prompts (str.format and Jinja-style placeholders, as real projects write)."""
SYSTEM = "You answer {{ question }} for {user}."
'''


def _agentgen(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentgen", *args], cwd=cwd, capture_output=True,
                          text=True, check=False, stdin=subprocess.DEVNULL, timeout=600)


def test_the_users_workflows_and_prompts_never_fail_init_or_validate(tmp_path):
    project = tmp_path / "agent"
    shutil.copytree(FIXTURES / "flat-requirements", project)
    (project / ".github" / "workflows").mkdir(parents=True)
    (project / ".github" / "workflows" / "ours.yml").write_text(USER_WORKFLOW)
    (project / "prompts.py").write_text(PROMPTS)

    adopted = _agentgen("init", str(project), "--no-input", "--target", "kubernetes",
                        "--target", "helm", cwd=tmp_path)
    assert adopted.returncode == 0, adopted.stderr + adopted.stdout
    assert (project / ".github" / "workflows" / "ours.yml").read_text() == USER_WORKFLOW

    checked = _agentgen("validate", str(project), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr + checked.stdout
    out = " ".join(checked.stdout.split())
    assert "prompts.py: [unrendered-jinja] note (your file)" in out, out
    assert ".github/workflows/ours.yml: [checkov] note (your file): CKV2_GHA_1" in out, out

    # agentgen's own files are still judged
    ours = project / ".github" / "workflows" / "agentgen-ci.yml"
    ours.write_text(ours.read_text() + "\n# {{ left behind }}\n")
    broken = _agentgen("validate", str(project), cwd=tmp_path)
    assert broken.returncode != 0
    assert ".github/workflows/agentgen-ci.yml: [unrendered-jinja]" in " ".join(broken.stderr.split()), \
        broken.stderr
