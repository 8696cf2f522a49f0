"""The database schema: the checkpointer's and the store's tables (their own setup), the API's
tables (below), and what each part of the runtime registers (the engine's runs and functions, the
ownership functions, the fence, the webhooks' table and trigger), created or migrated in one place,
serialized across processes. Above the modules it collects: none of them imports it."""

from __future__ import annotations

import asyncio
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from .engine.fencing import FUNCTION as FENCE_FUNCTION
from .engine.sql import FUNCTIONS
from .engine.sql import SCHEMA as ENGINE_SCHEMA
from .ownership import FUNCTION as OWNERSHIP_FUNCTION
from .ownership import MATCH_FUNCTION
from .surfaces.webhooks import FUNCTIONS as WEBHOOK_FUNCTIONS
from .surfaces.webhooks import SCHEMA as WEBHOOK_SCHEMA

# Threads, background runs and created assistants (with their versions) of the API; checkpoints
# live in the checkpointer's own tables.
API_SCHEMA = """
CREATE TABLE IF NOT EXISTS agent_threads (
    thread_id text PRIMARY KEY,
    owner text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS agent_threads_owner ON agent_threads (owner, created_at DESC);
CREATE TABLE IF NOT EXISTS agent_runs (
    run_id text PRIMARY KEY,
    thread_id text NOT NULL REFERENCES agent_threads ON DELETE CASCADE,
    assistant_id text NOT NULL,
    status text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}',
    error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS agent_runs_thread ON agent_runs (thread_id, created_at DESC);
CREATE TABLE IF NOT EXISTS agent_assistants (
    assistant_id text PRIMARY KEY,
    owner text NOT NULL,
    graph_id text NOT NULL,
    version integer NOT NULL DEFAULT 1,
    name text NOT NULL,
    description text,
    config jsonb NOT NULL DEFAULT '{}',
    context jsonb NOT NULL DEFAULT '{}',
    metadata jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS agent_assistants_owner ON agent_assistants (owner, created_at DESC);
CREATE TABLE IF NOT EXISTS agent_assistant_versions (
    assistant_id text NOT NULL REFERENCES agent_assistants ON DELETE CASCADE,
    version integer NOT NULL,
    graph_id text NOT NULL,
    name text NOT NULL,
    description text,
    config jsonb NOT NULL DEFAULT '{}',
    context jsonb NOT NULL DEFAULT '{}',
    metadata jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (assistant_id, version)
);
ALTER TABLE agent_threads ADD COLUMN IF NOT EXISTS ttl jsonb;
ALTER TABLE agent_threads ADD COLUMN IF NOT EXISTS expires_at timestamptz;
CREATE INDEX IF NOT EXISTS agent_threads_expiry ON agent_threads (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS agent_crons (
    cron_id text PRIMARY KEY,
    owner text NOT NULL,
    assistant_id text NOT NULL,
    thread_id text REFERENCES agent_threads ON DELETE CASCADE,
    schedule text NOT NULL,
    timezone text,
    end_time timestamptz,
    enabled boolean NOT NULL DEFAULT true,
    on_run_completed text,
    payload jsonb NOT NULL DEFAULT '{}',
    metadata jsonb NOT NULL DEFAULT '{}',
    next_run_date timestamptz NOT NULL,
    runs integer NOT NULL DEFAULT 0,
    last_run_id text,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- custom auth: the user who created the cron, whom its runs run as
ALTER TABLE agent_crons ADD COLUMN IF NOT EXISTS auth_user jsonb;
CREATE INDEX IF NOT EXISTS agent_crons_owner ON agent_crons (owner, created_at DESC);
CREATE INDEX IF NOT EXISTS agent_crons_due ON agent_crons (next_run_date) WHERE enabled;
"""


# One key for every process of every replica: schema setup runs in one of them at a time.
SCHEMA_LOCK_KEY = 0x6167656E7467656E  # "agentgen"


async def setup_schema(conn: AsyncConnectionPool | AsyncConnection,
                       store_index: dict[str, Any] | None = None) -> None:
    """Create or migrate the checkpointer, store and API tables (idempotent); with `store_index`
    (langgraph.json store.index) the store's vector tables too (pgvector). Serialized across
    processes by a PostgreSQL advisory lock: concurrent first starts would race on the migrations."""
    if isinstance(conn, AsyncConnectionPool):
        async with conn.connection() as connection:
            await _setup_locked(connection, store_index)
    else:
        await _setup_locked(conn, store_index)


async def _setup_locked(conn: AsyncConnection, store_index: dict[str, Any] | None = None) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.store.postgres.aio import AsyncPostgresStore

    # Poll instead of waiting in pg_advisory_lock: the migrations create indexes CONCURRENTLY, which
    # wait for every open transaction, including one blocked on the lock (a deadlock).
    while not (await (await conn.execute("SELECT pg_try_advisory_lock(%s) AS got",  # noqa: ASYNC110
                                         (SCHEMA_LOCK_KEY,))).fetchone())["got"]:
        await asyncio.sleep(0.1)
    try:
        await AsyncPostgresSaver(conn).setup()
        # (the oldest checkpointer the runtime admits has no `index` argument: only when asked)
        store = AsyncPostgresStore(conn, index=store_index) if store_index else AsyncPostgresStore(conn)
        await store.setup()
        for statement in (s for s in (API_SCHEMA + ENGINE_SCHEMA + WEBHOOK_SCHEMA).split(";")
                          if s.strip()):
            await conn.execute(statement)
        for function in (FENCE_FUNCTION, MATCH_FUNCTION, OWNERSHIP_FUNCTION, *FUNCTIONS, *WEBHOOK_FUNCTIONS):
            await conn.execute(function)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_KEY,))
