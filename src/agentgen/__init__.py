"""agentgen: generate a validated production deployment repository for a LangGraph agent.

Public API: `generate`, `load_spec`, `spec_schema`, `presets`, `validate`; for repositories after
generation `update` and `check`; and the error classes.
Everything is imported lazily so that `agentgen --help` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .api import Result, generate, validate
    from .errors import (
        AgentgenError,
        ConfigFileError,
        DestinationError,
        SpecError,
        UserError,
        ValidationFailedError,
    )
    from .lifecycle import CheckResult, UpdateResult, check, update
    from .spec import Spec, load_spec, presets, read_answers_file, spec_schema

__all__ = [
    "AgentgenError", "CheckResult", "ConfigFileError", "DestinationError", "Result", "Spec",
    "SpecError", "UpdateResult", "UserError", "ValidationFailedError", "__version__", "check",
    "generate", "load_spec", "presets", "read_answers_file", "spec_schema", "update", "validate",
]

_HOMES = {
    "generate": "api", "validate": "api", "Result": "api",
    "update": "lifecycle", "check": "lifecycle", "UpdateResult": "lifecycle",
    "CheckResult": "lifecycle",
    "Spec": "spec", "load_spec": "spec", "presets": "spec", "read_answers_file": "spec",
    "spec_schema": "spec",
    "AgentgenError": "errors", "ConfigFileError": "errors", "DestinationError": "errors",
    "SpecError": "errors", "UserError": "errors", "ValidationFailedError": "errors",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        from importlib import import_module

        return getattr(import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
