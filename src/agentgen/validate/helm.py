"""Each chart: `helm lint --strict` (values against values.schema.json included), then `helm template`
with the chart's namespace, every object checked by `_k8s.check_documents`."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from . import Context, Finding, finding, skipped, tool_missing
from ._k8s import INSTALL_TOOLS, check_documents, helm_template, run
from ._paths import is_chart
from ._tools import which

NAME = "helm"


def matches(rel: PurePosixPath) -> bool:
    return is_chart(rel)


def namespace(ctx: Context) -> str:
    return str(ctx.answers.get("namespace") or ctx.answers.get("name") or "agents")


def check(path: Path, ctx: Context) -> list[Finding]:
    helm = which("helm")
    if helm is None:
        return [tool_missing(NAME, "helm", INSTALL_TOOLS)]
    chart = path.parent
    lint = run([helm, "lint", "--strict", "--namespace", namespace(ctx), str(chart)])
    if lint.returncode != 0:
        return [finding(ctx, path, NAME, f"helm lint --strict: {problem}")
                for problem in _lint_problems(lint.stdout) or [lint.stderr.strip()[-400:]]]
    docs, error = helm_template(ctx, chart, namespace(ctx))
    if docs is None:
        return [finding(ctx, path, NAME, f"helm template failed: {error}")]
    problems, reasons = check_documents(docs)
    return [finding(ctx, path, NAME, p) for p in problems] + [skipped(NAME, r) for r in reasons]


def _lint_problems(output: str) -> list[str]:
    """helm lint's [ERROR]/[WARNING] entries, each with its indented continuation lines, one line each."""
    problems: list[str] = []
    for line in output.splitlines():
        if line.startswith(("[ERROR]", "[WARNING]")):
            problems.append(line.strip())
        elif problems and line.startswith((" ", "\t")) and line.strip():
            problems[-1] += " " + line.strip()
    return problems
