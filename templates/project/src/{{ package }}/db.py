"""PostgreSQL: the connection pool (sized from the settings) and the checkpointer/store schema."""

from __future__ import annotations

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
        # What langgraph-checkpoint-postgres requires of its connections.
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        name="agent",
    )


async def setup_schema(pool: AsyncConnectionPool) -> None:
    """Create or migrate the checkpointer and store tables (idempotent)."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.store.postgres.aio import AsyncPostgresStore

    await AsyncPostgresSaver(pool).setup()
    await AsyncPostgresStore(pool).setup()
