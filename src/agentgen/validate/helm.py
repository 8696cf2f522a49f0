"""Each chart: `helm lint --strict` (values against values.schema.json included), then `helm template`
with the chart's namespace, every object checked by `_k8s.check_documents`."""

from __future__ import annotations

import subprocess
from concurrent.futures import Future
from pathlib import Path, PurePosixPath

from ._base import Context, Finding, finding, skipped, tool_missing
from ._k8s import INSTALL_TOOLS, helm_template, run
from ._paths import is_chart
from ._tools import which

NAME = "helm"


def matches(rel: PurePosixPath) -> bool:
    return is_chart(rel)


def namespace(ctx: Context) -> str:
    return str(ctx.answers.get("namespace") or ctx.answers.get("name") or "agents")


def _lint(ctx: Context, chart: Path, helm: str) -> Future[subprocess.CompletedProcess[str]]:
    return ctx.started(f"helm-lint:{chart}", lambda: run(
        [helm, "lint", "--strict", "--namespace", namespace(ctx), str(chart)]))


def prefetch(ctx: Context, files: list[PurePosixPath]) -> None:
    helm = which("helm")
    for rel in files:
        if helm is not None and matches(rel):
            chart = (ctx.root / rel).parent
            _lint(ctx, chart, helm)
            helm_template(ctx, chart, namespace(ctx))


def check(path: Path, ctx: Context) -> list[Finding]:
    helm = which("helm")
    if helm is None:
        return [tool_missing(NAME, "helm", INSTALL_TOOLS)]
    chart = path.parent
    lint = _lint(ctx, chart, helm).result()
    if lint.returncode != 0:
        return [finding(ctx, path, NAME, f"helm lint --strict: {problem}")
                for problem in _lint_problems(lint.stdout) or [lint.stderr.strip()[-400:]]]
    rendered = helm_template(ctx, chart, namespace(ctx)).result()
    if rendered.docs is None:
        return [finding(ctx, path, NAME, f"helm template failed: {rendered.error}")]
    return ([finding(ctx, path, NAME, p) for p in rendered.problems]
            + [skipped(NAME, r) for r in rendered.skipped])


def _lint_problems(output: str) -> list[str]:
    """helm lint's [ERROR]/[WARNING] entries, each with its indented continuation lines, one line each."""
    problems: list[str] = []
    for line in output.splitlines():
        if line.startswith(("[ERROR]", "[WARNING]")):
            problems.append(line.strip())
        elif problems and line.startswith((" ", "\t")) and line.strip():
            problems[-1] += " " + line.strip()
    return problems
