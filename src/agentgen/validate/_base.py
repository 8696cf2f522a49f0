"""What every validator shares: the finding it reports (`Finding`, `Level`), the context it is run
in (`Context`), the shape of a validator (`Validator`) and the report of a tree (`Report`). A leaf:
validators import it, the registry (`agentgen.validate`) imports them."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import yaml


class Level(StrEnum):
    ERROR = "error"
    SKIPPED = "skipped"
    NOTE = "note"  # about a file the user owns: reported, never a failure


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    validator: str
    message: str
    level: Level = Level.ERROR

    def __str__(self) -> str:
        prefix = {Level.SKIPPED: "skipped: ", Level.NOTE: "note (your file): "}.get(self.level, "")
        return f"{self.path}: [{self.validator}] {prefix}{self.message}"


@dataclass
class Context:
    """What validators may know about the tree besides a file: its root, recorded answers, and
    renders other validators already made (kustomize, helm), so that each is made once."""

    root: Path
    renders: dict[str, Any] = field(default_factory=dict)
    _pool: Any = None

    def started(self, key: str, work: Callable[[], Any]) -> Any:
        """The result of `work`, run once per key on a thread of this context's pool: validators
        `prefetch` the external tools' runs (kustomize, helm) so they run side by side, and every
        validator that needs one waits for the same run."""
        if key not in self.renders:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2),
                                                thread_name_prefix="agentgen-validate")
            self.renders[key] = self._pool.submit(work)
        return self.renders[key]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    @cached_property
    def answers(self) -> dict[str, Any]:
        path = self.root / ".copier-answers.yml"
        if not path.is_file():
            return {}
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}


class Validator(Protocol):
    """A file validator (`matches` + `check`), or a tree validator (`check_tree`, run once)."""

    NAME: str

    def matches(self, rel: PurePosixPath) -> bool: ...

    def check(self, path: Path, ctx: Context) -> list[Finding]: ...


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level is Level.ERROR]

    @property
    def skipped(self) -> list[Finding]:
        return [f for f in self.findings if f.level is Level.SKIPPED]

    @property
    def notes(self) -> list[Finding]:
        return [f for f in self.findings if f.level is Level.NOTE]

    def judged_for(self, ours: Callable[[str], bool]) -> Report:
        """This report with the errors about files that are not agentgen's (`ours` says which)
        turned into notes: the user's own workflows, prompts and code never fail agentgen."""
        def judged(finding: Finding) -> Finding:
            if finding.level is Level.ERROR and finding.path != "*" \
                    and not finding.path.startswith("(rendered)") and not ours(finding.path):
                return Finding(finding.path, finding.validator, finding.message, Level.NOTE)
            return finding

        return Report([judged(f) for f in self.findings], self.checked)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> str:
        return json.dumps({"findings": [asdict(f) for f in self.findings], "checked": self.checked})

    @classmethod
    def from_json(cls, text: str) -> Report:
        data = json.loads(text)
        findings = [Finding(f["path"], f["validator"], f["message"], Level(f["level"]))
                    for f in data["findings"]]
        return cls(findings, data["checked"])


def finding(ctx: Context, path: Path, validator: str, message: str,
            level: Level = Level.ERROR) -> Finding:
    return Finding(path.relative_to(ctx.root).as_posix(), validator, message, level)


def skipped(validator: str, reason: str) -> Finding:
    """A check that could not run: reported, never counted as passed."""
    return Finding("*", validator, reason, Level.SKIPPED)


def tool_missing(validator: str, tool: str, install: str) -> Finding:
    return skipped(validator, f"{tool} is not installed ({install})")
