"""agentgen-runtime tested directly: as a library and as server processes started from its source
(templates/project/runtime, installed editable by scripts/setup.sh --test) on a throwaway PostgreSQL,
with test agents written for these tests (tests/runtime/agents/)."""

from __future__ import annotations

import hashlib

import pytest


@pytest.fixture(scope="module")
def database(postgres, request) -> str:
    """A database of its own for each test module, on the session's cluster."""
    name = "rt_" + hashlib.sha256(request.module.__name__.encode()).hexdigest()[:10]
    return postgres.create_database(name)
