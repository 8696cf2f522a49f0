"""One hierarchy for every error agentgen reports to a user.

`UserError`s are the user's to fix: the CLI prints them as one line per problem and exits with their
`exit_code`, without a traceback. Anything else escaping the library is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class AgentgenError(Exception):
    """Base class of agentgen's errors."""


class UserError(AgentgenError):
    """An error caused by input or environment; reported as one line per problem."""

    exit_code = 1

    def lines(self) -> list[str]:
        return [str(self)]


@dataclass(frozen=True)
class FieldProblem:
    """One invalid field of a spec: `field` is a path such as `targets[1]` or `overrides.replicas`."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class SpecError(UserError, ValueError):
    """The answers do not form a valid spec; `problems` lists every invalid field."""

    exit_code = 2

    def __init__(self, problems: Sequence[FieldProblem]):
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]


class ConfigFileError(UserError, ValueError):
    """The answers file cannot be read or parsed (message carries path:line:column)."""

    exit_code = 2


class DestinationError(UserError):
    """The destination cannot take the generated project (a file, not empty, not writable)."""


class OutsideProjectError(UserError):
    """A path agentgen would read or write leads outside the project (symlink, '..')."""


class ValidationFailedError(UserError):
    """A generated artifact failed a validator; nothing was written."""

    def __init__(self, findings: Sequence[object], *, wrote_nothing: bool = True):
        self.findings = list(findings)
        super().__init__(f"{len(self.findings)} validation error(s)"
                         + ("; nothing was written" if wrote_nothing else ""))

    def lines(self) -> list[str]:
        return [str(f) for f in self.findings] + [str(self)]


class GitError(UserError):
    """`git` failed while creating the initial commit."""
