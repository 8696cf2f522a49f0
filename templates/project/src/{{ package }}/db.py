"""PostgreSQL: the connection pool (sized from the settings) and the checkpointer/store schema."""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from .settings import Settings


def create_pool(settings: Settings) -> AsyncConnectionPool:
    """A closed pool: `await pool.open()` it. `db_pool_size` connections are kept, and up to
    `db_pool_overflow` more are opened under load. Connections are checked before use, so a
    restarted database costs no failed request."""
    return AsyncConnectionPool(
        settings.database_conninfo(),
        min_size=settings.db_pool_size,
        max_size=settings.db_pool_size + settings.db_pool_overflow,
        open=False,
        timeout=settings.db_connect_timeout,
        check=AsyncConnectionPool.check_connection,
        kwargs=CONNECTION_KWARGS,
        name="agent",
    )


# What langgraph-checkpoint-postgres requires of its connections.
CONNECTION_KWARGS = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}


async def connect(settings: Settings) -> AsyncConnection:
    """One connection, for one-off commands (maintenance) that need no pool."""
    return await AsyncConnection.connect(
        settings.database_conninfo(), connect_timeout=max(1, int(settings.db_connect_timeout)),
        **CONNECTION_KWARGS)


async def setup_schema(conn: AsyncConnectionPool | AsyncConnection) -> None:
    """Create or migrate the checkpointer and store tables (idempotent)."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.store.postgres.aio import AsyncPostgresStore

    await AsyncPostgresSaver(conn).setup()
    await AsyncPostgresStore(conn).setup()
