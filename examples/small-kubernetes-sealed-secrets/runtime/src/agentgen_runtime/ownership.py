"""Ownership scoping, in one place: every read and write of a thread, and of the runs, checkpoints
and events on it, is filtered by its owner in the query itself.

A caller reaches the data through a `Scope` (its identity: today the API key's hash; custom auth's
filters will narrow the same scope) and the `Threads` data layer, whose every statement carries the
scope's condition: no field of a request can widen it, and no route runs SQL of its own. A thread
that is not the caller's is indistinguishable from a missing one (404). Checkpoints are read through
the checkpointer with the config of a thread this layer authorised (`checkpoint_config`), never a
thread id a client sent in a body.

Runs are created by the engine's `agent_run_create`, which takes the caller's thread through
`agent_thread_for_run` below (in the same round trip): a run can only be created on a thread the
scope owns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException
from psycopg import sql
from psycopg.types.json import Jsonb

from .db import keep_latest_checkpoints

if TYPE_CHECKING:
    from .auth.handlers import AuthUser, Handlers

# Whether a row's metadata passes a custom auth handler's filter (checked by custom_auth.check_filter
# before it gets here; custom_auth.matches is the same for what is not a row): a key equal to a
# value or {"$eq": value}, {"$contains": element or elements} of an array, $or / $and of filters.
MATCH_FUNCTION = """
CREATE OR REPLACE FUNCTION agent_metadata_match(p_metadata jsonb, p_filter jsonb)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
    v_key text;
    v_value jsonb;
    v_op text;
    v_operand jsonb;
    v_group jsonb;
    v_any boolean;
BEGIN
    IF p_filter IS NULL THEN
        RETURN true;
    END IF;
    FOR v_key, v_value IN SELECT key, value FROM jsonb_each(p_filter) LOOP
        IF v_key = '$or' THEN
            v_any := false;
            FOR v_group IN SELECT value FROM jsonb_array_elements(v_value) LOOP
                IF agent_metadata_match(p_metadata, v_group) THEN
                    v_any := true;
                    EXIT;
                END IF;
            END LOOP;
            IF NOT v_any THEN
                RETURN false;
            END IF;
        ELSIF v_key = '$and' THEN
            FOR v_group IN SELECT value FROM jsonb_array_elements(v_value) LOOP
                IF NOT agent_metadata_match(p_metadata, v_group) THEN
                    RETURN false;
                END IF;
            END LOOP;
        ELSIF NOT coalesce(p_metadata ? v_key, false) THEN
            RETURN false;
        ELSIF jsonb_typeof(v_value) = 'object'
              AND (SELECT min(k) FROM jsonb_object_keys(v_value) k) LIKE '$%' THEN
            SELECT key, value INTO v_op, v_operand FROM jsonb_each(v_value) LIMIT 1;
            IF v_op = '$eq' THEN
                IF p_metadata -> v_key <> v_operand THEN
                    RETURN false;
                END IF;
            ELSIF v_op = '$contains' THEN
                IF jsonb_typeof(p_metadata -> v_key) <> 'array' THEN
                    RETURN false;
                END IF;
                IF jsonb_typeof(v_operand) <> 'array' THEN
                    v_operand := jsonb_build_array(v_operand);
                END IF;
                IF EXISTS (SELECT 1 FROM jsonb_array_elements(v_operand) w WHERE NOT EXISTS (
                        SELECT 1 FROM jsonb_array_elements(p_metadata -> v_key) h WHERE h = w)) THEN
                    RETURN false;
                END IF;
            ELSE
                RETURN false;
            END IF;
        ELSIF p_metadata -> v_key <> v_value THEN
            RETURN false;
        END IF;
    END LOOP;
    RETURN true;
END
$fn$
"""

# Locks the caller's thread for a run being created on it (creating it first when asked, with
# `p_metadata`), and records the graph and assistant its runs use (as the Platform, in its
# metadata); SQLSTATE AGT04 when the thread is not the caller's, does not pass the caller's filter
# (custom auth), or is missing.
FUNCTION = """
CREATE OR REPLACE FUNCTION agent_thread_for_run(
    p_thread_id text, p_owner text, p_graph_id text, p_assistant_id text, p_create boolean,
    p_metadata jsonb, p_filter jsonb)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    v_used jsonb := jsonb_build_object('graph_id', p_graph_id, 'assistant_id', p_assistant_id);
BEGIN
    IF p_create THEN
        INSERT INTO agent_threads (thread_id, owner, metadata)
        VALUES (p_thread_id, p_owner, coalesce(p_metadata, '{}') || v_used)
        ON CONFLICT (thread_id) DO NOTHING;
    END IF;
    UPDATE agent_threads SET metadata = metadata || v_used, updated_at = now()
    WHERE thread_id = p_thread_id AND owner = p_owner AND agent_metadata_match(metadata, p_filter);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'thread % not found', p_thread_id USING ERRCODE = 'AGT04';
    END IF;
END
$fn$
"""
NOT_FOUND = "AGT04"

# Thread rows with whether a run is pending or running on them (any process).
# A thread's status as the Platform reports it: `busy` (a run pending or running), `interrupted`
# (its newest checkpoint has an interrupt waiting), `error` (its last run failed), else `idle`.
_STATUS = sql.SQL(
    "CASE WHEN EXISTS (SELECT 1 FROM agent_runs r WHERE r.thread_id = t.thread_id "
    "AND r.status IN ('pending', 'running')) THEN 'busy' "
    "WHEN EXISTS (SELECT 1 FROM checkpoint_writes w WHERE w.thread_id = t.thread_id "
    "AND w.checkpoint_ns = '' AND w.channel = '__interrupt__' AND w.checkpoint_id = "
    "(SELECT max(c.checkpoint_id) FROM checkpoints c WHERE c.thread_id = t.thread_id "
    "AND c.checkpoint_ns = '')) THEN 'interrupted' "
    "WHEN (SELECT r.status FROM agent_runs r WHERE r.thread_id = t.thread_id "
    "ORDER BY r.seq DESC LIMIT 1) IN ('error', 'timeout') THEN 'error' ELSE 'idle' END")
_THREADS = sql.SQL(
    "SELECT * FROM (SELECT t.thread_id, t.owner, t.metadata, t.created_at, t.updated_at, "
    "{} AS status FROM agent_threads t) t").format(_STATUS)
_CHECKPOINT_TABLES = ("checkpoint_writes", "checkpoint_blobs", "checkpoints")
SORTABLE = ("thread_id", "created_at", "updated_at", "status")


@dataclass(frozen=True)
class Scope:
    """What a caller may reach: the rows its identity owns and, with custom auth, that pass the
    filter the handler of the operation returned (`authorize`). A scope of a request under custom
    auth refuses to build a condition until its operation was authorized: a route that forgot to
    ask fails, it does not serve unfiltered."""

    owner: str
    filter: dict[str, Any] | None = None
    user: AuthUser | None = None
    handlers: Handlers | None = None
    authorized: bool = True

    def condition(self, table: str = "t") -> sql.Composable:
        """The filter every statement over `table` (agent_threads, agent_assistants or
        agent_crons, by its alias) carries; its values are the named parameters of `params`."""
        if not self.authorized:
            raise RuntimeError("a scope used before its operation was authorized (custom auth)")
        owned = sql.SQL("{}.owner = %(scope_owner)s").format(sql.Identifier(table))
        if self.filter is None:
            return owned
        return sql.SQL("{} AND agent_metadata_match({}.metadata, %(scope_filter)s)").format(
            owned, sql.Identifier(table))

    def params(self, **values: Any) -> dict[str, Any]:
        """A statement's named parameters, with the scope's."""
        return {**values, "scope_owner": self.owner,
                "scope_filter": None if self.filter is None else Jsonb(self.filter)}

    async def authorize(self, resource: str, action: str, value: dict[str, Any]) -> Scope:
        """This scope for one operation: the custom auth handler of (resource, action) has seen
        `value` (and may have changed it: stamped metadata on what is created) and said yes, with
        its filter. Without custom auth, the scope itself."""
        if self.handlers is None or self.user is None:
            return self
        found = await self.handlers.authorize(self.user, resource, action, value)
        return replace(self, filter=found, authorized=True)

    def visible(self, metadata: dict[str, Any]) -> bool:
        """Whether something that is not a row (a graph's system assistant) passes the filter."""
        from .auth.handlers import matches

        return matches(metadata, self.filter)


def thread_not_found(thread_id: str) -> HTTPException:
    return HTTPException(404, f"thread {thread_id} not found")


def checkpoint_config(thread_id: str, checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    """The checkpointer config of a thread the caller was authorised for: a client's checkpoint
    reference may only name a checkpoint (id, namespace) within it, never another thread."""
    configurable: dict[str, Any] = {"thread_id": thread_id}
    for key in ("checkpoint_ns", "checkpoint_id"):
        value = (checkpoint or {}).get(key)
        if value is not None:
            if not isinstance(value, str):
                raise HTTPException(422, f"checkpoint.{key} must be a string")
            configurable[key] = value
    return {"configurable": configurable}


class _Rows:
    """A scoped table's statements: one row or all rows of a query, on a pooled connection."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def _one(self, query: sql.Composable, params: dict[str, Any]) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            return await (await conn.execute(query, params)).fetchone()

    async def _all(self, query: sql.Composable, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            return await (await conn.execute(query, params)).fetchall()


class Threads(_Rows):
    """The threads and their runs as the data layer serves them: every statement scoped."""

    # --- threads ----------------------------------------------------------------------------
    async def create(self, scope: Scope, thread_id: str, metadata: dict[str, Any],
                     if_exists: str, ttl: dict[str, Any] | None = None) -> dict[str, Any]:
        """The new thread's row (expiring `ttl["ttl"]` minutes from now, when given); an existing
        one of the caller's with if_exists=do_nothing, a 409 with raise; a 404 when the id is
        someone else's."""
        row = await self._one(sql.SQL(
            "INSERT INTO agent_threads (thread_id, owner, metadata, ttl, expires_at) "
            "VALUES (%(thread_id)s, %(scope_owner)s, %(metadata)s, %(ttl)s, "
            "now() + make_interval(secs => %(seconds)s)) ON CONFLICT (thread_id) DO NOTHING "
            "RETURNING thread_id, metadata, created_at, updated_at, 'idle' AS status, true AS new"),
            scope.params(thread_id=thread_id, metadata=Jsonb(metadata), **_ttl(ttl)))
        if row is not None:
            return row
        existing = await self.get(scope, thread_id)
        if if_exists == "raise":
            raise HTTPException(409, f"thread {thread_id} already exists")
        return existing

    async def get(self, scope: Scope, thread_id: str) -> dict[str, Any]:
        row = await self._one(sql.SQL("{} WHERE t.thread_id = %(thread_id)s AND {}").format(
            _THREADS, scope.condition()), scope.params(thread_id=thread_id))
        if row is None:
            raise thread_not_found(thread_id)
        return row

    async def exists(self, thread_id: str) -> bool:
        """Whether a thread of that id exists, whoever's (never answered to a client as such)."""
        return await self._one(sql.SQL("SELECT 1 AS found FROM agent_threads WHERE thread_id = "
                                       "%(thread_id)s"), {"thread_id": thread_id}) is not None

    async def graph_id(self, scope: Scope, thread_id: str) -> str | None:
        """The graph the caller's thread runs (None before its first run); 404 if not the caller's."""
        row = await self._one(sql.SQL(
            "SELECT t.metadata ->> 'graph_id' AS graph_id FROM agent_threads t "
            "WHERE t.thread_id = %(thread_id)s AND {}").format(scope.condition()),
            scope.params(thread_id=thread_id))
        if row is None:
            raise thread_not_found(thread_id)
        return row["graph_id"]

    async def search(self, scope: Scope, *, metadata: dict[str, Any], ids: list[str] | None,
                     status: str | None, sort_by: str, descending: bool, limit: int,
                     offset: int) -> list[dict[str, Any]]:
        if sort_by not in SORTABLE:
            raise ValueError(sort_by)
        return await self._all(sql.SQL(
            "{} WHERE {} AND t.metadata @> %(metadata)s "
            "AND (%(ids)s::text[] IS NULL OR t.thread_id = ANY(%(ids)s)) "
            "AND (%(status)s::text IS NULL OR t.status = %(status)s) "
            "ORDER BY {} {}, t.thread_id LIMIT %(limit)s OFFSET %(offset)s").format(
                _THREADS, scope.condition(), sql.Identifier("t", sort_by),
                sql.SQL("DESC" if descending else "ASC")),
            scope.params(metadata=Jsonb(metadata), ids=ids, status=status, limit=limit,
                         offset=offset))

    async def delete(self, scope: Scope, thread_id: str) -> None:
        """The thread, its runs (cascade) and its checkpoints, in one transaction."""
        async with self.pool.connection() as conn, conn.transaction():
            row = await (await conn.execute(sql.SQL(
                "DELETE FROM agent_threads t WHERE t.thread_id = %(thread_id)s AND {} "
                "RETURNING t.thread_id").format(scope.condition()),
                scope.params(thread_id=thread_id))).fetchone()
            if row is None:
                raise thread_not_found(thread_id)
            for table in _CHECKPOINT_TABLES:
                await conn.execute(sql.SQL("DELETE FROM {} WHERE thread_id = %s").format(
                    sql.Identifier(table)), (thread_id,))

    # --- runs on a thread -------------------------------------------------------------------
    async def update(self, scope: Scope, thread_id: str, metadata: dict[str, Any],
                     ttl: dict[str, Any] | None = None) -> dict[str, Any]:
        """The caller's thread with `metadata` merged into its own (and a new TTL from now, when
        given)."""
        row = await self._one(sql.SQL(
            "UPDATE agent_threads t SET metadata = t.metadata || %(metadata)s, updated_at = now(), "
            "ttl = coalesce(%(ttl)s, t.ttl), expires_at = CASE WHEN %(ttl)s::jsonb IS NULL "
            "THEN t.expires_at ELSE now() + make_interval(secs => %(seconds)s) END "
            "WHERE t.thread_id = %(thread_id)s AND {} RETURNING t.thread_id").format(
                scope.condition()),
            scope.params(thread_id=thread_id, metadata=Jsonb(metadata), **_ttl(ttl)))
        if row is None:
            raise thread_not_found(thread_id)
        row = await self.get(scope, thread_id)
        return row

    async def count(self, scope: Scope, metadata: dict[str, Any], status: str | None = None) -> int:
        row = await self._one(sql.SQL(
            "SELECT count(*) AS n FROM ({}) t WHERE {} AND t.metadata @> %(metadata)s "
            "AND (%(status)s::text IS NULL OR t.status = %(status)s)").format(
                _THREADS, scope.condition()),
            scope.params(metadata=Jsonb(metadata), status=status))
        return int(row["n"]) if row else 0

    async def copy(self, scope: Scope, thread_id: str, new_id: str,
                   stamped: dict[str, Any] | None = None) -> dict[str, Any]:
        """A new thread of the caller's with the metadata (and `stamped` over it: custom auth's
        create handler's) and every checkpoint of the caller's thread `thread_id` (its runs stay
        with the original), in one transaction."""
        async with self.pool.connection() as conn, conn.transaction():
            source = await (await conn.execute(sql.SQL(
                "SELECT t.metadata FROM agent_threads t WHERE t.thread_id = %(thread_id)s AND {} "
                "FOR SHARE").format(scope.condition()), scope.params(thread_id=thread_id))).fetchone()
            if source is None:
                raise thread_not_found(thread_id)
            row = await (await conn.execute(
                "INSERT INTO agent_threads (thread_id, owner, metadata) VALUES (%s, %s, %s) "
                "RETURNING thread_id, metadata, created_at, updated_at, 'idle' AS status",
                (new_id, scope.owner, Jsonb({**source["metadata"], **(stamped or {})})))).fetchone()
            for table in _CHECKPOINT_TABLES:
                columns = [c["column_name"] for c in await (await conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                    "AND table_schema = current_schema() ORDER BY ordinal_position",
                    (table,))).fetchall()]
                if not columns:
                    continue
                values = [sql.Placeholder("new") if c == "thread_id" else sql.Identifier(c) for c in columns]
                await conn.execute(sql.SQL(
                    "INSERT INTO {} ({}) SELECT {} FROM {} WHERE thread_id = %(old)s").format(
                        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)),
                        sql.SQL(", ").join(values), sql.Identifier(table)),
                    {"new": new_id, "old": thread_id})
        return row

    async def prune(self, scope: Scope, thread_ids: list[str], keep_latest: bool) -> int:
        """Of the caller's threads among `thread_ids`: delete each (row, runs, checkpoints), or
        keep only its latest checkpoint (per namespace) and what that checkpoint reads. Returns
        how many were pruned; others' ids count for nothing."""
        async with self.pool.connection() as conn, conn.transaction():
            if keep_latest:
                owned = [r["thread_id"] for r in await (await conn.execute(sql.SQL(
                    "SELECT t.thread_id FROM agent_threads t WHERE t.thread_id = ANY(%(ids)s) "
                    "AND {} FOR UPDATE").format(scope.condition()), scope.params(ids=thread_ids))).fetchall()]
                await keep_latest_checkpoints(conn, owned)
                return len(owned)
            deleted = [r["thread_id"] for r in await (await conn.execute(sql.SQL(
                "DELETE FROM agent_threads t WHERE t.thread_id = ANY(%(ids)s) AND {} "
                "RETURNING t.thread_id").format(scope.condition()),
                scope.params(ids=thread_ids))).fetchall()]
            for table in _CHECKPOINT_TABLES:
                await conn.execute(sql.SQL("DELETE FROM {} WHERE thread_id = ANY(%s)").format(
                    sql.Identifier(table)), (deleted,))
            return len(deleted)

    async def of_assistant(self, scope: Scope, assistant_id: str) -> list[str]:
        """The caller's threads that runs of `assistant_id` ran on."""
        return [row["thread_id"] for row in await self._all(sql.SQL(
            "SELECT t.thread_id FROM agent_threads t WHERE {} AND EXISTS (SELECT 1 FROM agent_runs r "
            "WHERE r.thread_id = t.thread_id AND r.assistant_id = %(assistant_id)s)").format(
                scope.condition()), scope.params(assistant_id=assistant_id))]

    async def runs(self, scope: Scope, thread_id: str, status: str | None, limit: int,
                   offset: int) -> list[dict[str, Any]]:
        rows = await self._all(sql.SQL(
            "SELECT r.*, r.run_id IS NOT NULL AS found FROM agent_threads t LEFT JOIN LATERAL ("
            "SELECT * FROM agent_runs WHERE thread_id = t.thread_id "
            "AND (%(status)s::text IS NULL OR status = %(status)s) "
            "ORDER BY seq DESC LIMIT %(limit)s OFFSET %(offset)s) r ON true "
            "WHERE t.thread_id = %(thread_id)s AND {}").format(scope.condition()),
            scope.params(thread_id=thread_id, status=status, limit=limit, offset=offset))
        if not rows:
            raise thread_not_found(thread_id)
        return [row for row in rows if row.pop("found")]

    async def runs_since(self, scope: Scope, thread_id: str, seq: int,
                         active_only: bool) -> list[dict[str, Any]]:
        """The runs of the caller's thread created after the run numbered `seq` (with
        active_only: the pending and running ones, and the newest), oldest first; 404 when the
        thread is not the caller's (the thread stream's view of its runs)."""
        rows = await self._all(sql.SQL(
            "SELECT r.run_id, r.seq, r.status, r.run_id IS NOT NULL AS found FROM agent_threads t "
            "LEFT JOIN agent_runs r ON r.thread_id = t.thread_id AND r.seq > %(seq)s "
            "AND (NOT %(active)s OR r.status IN ('pending', 'running') OR r.seq = "
            "(SELECT max(seq) FROM agent_runs n WHERE n.thread_id = t.thread_id)) "
            "WHERE t.thread_id = %(thread_id)s AND {} ORDER BY r.seq").format(scope.condition()),
            scope.params(thread_id=thread_id, seq=seq, active=active_only))
        if not rows:
            raise thread_not_found(thread_id)
        return [row for row in rows if row.pop("found")]

    async def run(self, scope: Scope, thread_id: str, run_id: str) -> dict[str, Any]:
        """The caller's run on the caller's thread, or 404 (naming the thread when it is not)."""
        row = await self._one(sql.SQL(
            "SELECT r.*, r.run_id IS NOT NULL AS found FROM agent_threads t LEFT JOIN agent_runs r "
            "ON r.thread_id = t.thread_id AND r.run_id = %(run_id)s "
            "WHERE t.thread_id = %(thread_id)s AND {}").format(scope.condition()),
            scope.params(thread_id=thread_id, run_id=run_id))
        if row is None:
            raise thread_not_found(thread_id)
        if not row.pop("found"):
            raise HTTPException(404, f"run {run_id} not found")
        return row

    async def delete_run(self, scope: Scope, thread_id: str, run_id: str) -> None:
        """Delete a run that has ended; 409 for one pending or running."""
        row = await self._one(sql.SQL(
            "DELETE FROM agent_runs r USING agent_threads t "
            "WHERE r.run_id = %(run_id)s AND r.thread_id = %(thread_id)s "
            "AND t.thread_id = r.thread_id AND {} "
            "AND r.status NOT IN ('pending', 'running') RETURNING r.run_id").format(
                scope.condition()), scope.params(thread_id=thread_id, run_id=run_id))
        if row is None:
            active = await self.run(scope, thread_id, run_id)  # 404 when it is not the caller's
            raise HTTPException(409, f"run {run_id} is {active['status']}: cancel it first")

    async def active_runs(self, scope: Scope, thread_id: str | None, run_ids: list[str] | None,
                          status: str | None) -> list[str]:
        """The caller's pending or running runs matching the filters (for a cancel)."""
        rows = await self._all(sql.SQL(
            "SELECT r.run_id FROM agent_runs r JOIN agent_threads t ON t.thread_id = r.thread_id "
            "WHERE {} AND r.status IN ('pending', 'running') "
            "AND (%(thread_id)s::text IS NULL OR r.thread_id = %(thread_id)s) "
            "AND (%(run_ids)s::text[] IS NULL OR r.run_id = ANY(%(run_ids)s)) "
            "AND (%(status)s::text IS NULL OR r.status = %(status)s)").format(scope.condition()),
            scope.params(thread_id=thread_id, run_ids=run_ids, status=status))
        return [row["run_id"] for row in rows]


ASSISTANT_COLUMNS = ("assistant_id", "graph_id", "name", "description", "config", "context",
                     "metadata", "version", "created_at", "updated_at")
_ASSISTANT_SORTABLE = ("assistant_id", "graph_id", "name", "created_at", "updated_at")


class Assistants(_Rows):
    """Assistants created through the API (versioned configurations of a graph), as the data layer
    serves them: every statement scoped to the caller, as threads are. The graphs' system
    assistants are not rows: the service answers them from langgraph.json."""

    async def get(self, scope: Scope, assistant_id: str) -> dict[str, Any] | None:
        return await self._one(sql.SQL(
            "SELECT a.* FROM agent_assistants a WHERE a.assistant_id = %(id)s AND {}").format(
                scope.condition("a")), scope.params(id=assistant_id))

    async def create(self, scope: Scope, assistant: dict[str, Any], if_exists: str) -> dict[str, Any]:
        """The new assistant (version 1); with if_exists=do_nothing the caller's existing one; 409
        when the id is taken."""
        async with self.pool.connection() as conn, conn.transaction():
            row = await (await conn.execute(
                "INSERT INTO agent_assistants (assistant_id, owner, graph_id, name, description, "
                "config, context, metadata) VALUES (%(assistant_id)s, %(owner)s, %(graph_id)s, "
                "%(name)s, %(description)s, %(config)s, %(context)s, %(metadata)s) "
                "ON CONFLICT (assistant_id) DO NOTHING RETURNING *",
                _jsonb({**assistant, "owner": scope.owner}))).fetchone()
            if row is not None:
                await conn.execute(
                    "INSERT INTO agent_assistant_versions (assistant_id, version, graph_id, name, "
                    "description, config, context, metadata, created_at) SELECT assistant_id, "
                    "version, graph_id, name, description, config, context, metadata, created_at "
                    "FROM agent_assistants WHERE assistant_id = %s", (row["assistant_id"],))
                return row
        existing = await self.get(scope, assistant["assistant_id"])
        if if_exists == "do_nothing" and existing is not None:
            return existing
        raise HTTPException(409, f"assistant {assistant['assistant_id']} already exists")

    async def update(self, scope: Scope, assistant_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """A new version with `changes` (metadata merged, the rest replaced), made the latest."""
        fields = {k: v for k, v in changes.items() if v is not None}
        async with self.pool.connection() as conn, conn.transaction():
            current = await (await conn.execute(sql.SQL(
                "SELECT a.* FROM agent_assistants a WHERE a.assistant_id = %(id)s AND {} "
                "FOR UPDATE").format(scope.condition("a")), scope.params(id=assistant_id))).fetchone()
            if current is None:
                raise assistant_not_found(assistant_id)
            top = await (await conn.execute(
                "SELECT max(version) AS v FROM agent_assistant_versions WHERE assistant_id = %s",
                (assistant_id,))).fetchone()
            merged = {**current, **fields, "version": (top["v"] or 0) + 1,
                      "metadata": {**current["metadata"], **(fields.get("metadata") or {})}}
            await conn.execute(
                "INSERT INTO agent_assistant_versions (assistant_id, version, graph_id, name, "
                "description, config, context, metadata) VALUES (%(assistant_id)s, %(version)s, "
                "%(graph_id)s, %(name)s, %(description)s, %(config)s, %(context)s, %(metadata)s)",
                _jsonb(merged))
            return await (await conn.execute(
                "UPDATE agent_assistants SET version = %(version)s, graph_id = %(graph_id)s, "
                "name = %(name)s, description = %(description)s, config = %(config)s, "
                "context = %(context)s, metadata = %(metadata)s, updated_at = now() "
                "WHERE assistant_id = %(assistant_id)s RETURNING *", _jsonb(merged))).fetchone()

    async def set_latest(self, scope: Scope, assistant_id: str, version: int) -> dict[str, Any]:
        async with self.pool.connection() as conn, conn.transaction():
            row = await (await conn.execute(sql.SQL(
                "UPDATE agent_assistants a SET version = v.version, graph_id = v.graph_id, "
                "name = v.name, description = v.description, config = v.config, "
                "context = v.context, metadata = v.metadata, updated_at = now() "
                "FROM agent_assistant_versions v WHERE a.assistant_id = %(id)s AND {} "
                "AND v.assistant_id = a.assistant_id AND v.version = %(version)s RETURNING a.*").format(
                    scope.condition("a")), scope.params(id=assistant_id, version=version))).fetchone()
        if row is None:
            raise HTTPException(404, f"assistant {assistant_id} has no version {version}")
        return row

    async def delete(self, scope: Scope, assistant_id: str) -> None:
        # its crons go with it (as on the Platform): their ticks would only fail
        row = await self._one(sql.SQL(
            "WITH gone AS (DELETE FROM agent_assistants a WHERE a.assistant_id = %(id)s AND {} "
            "RETURNING a.assistant_id, a.owner), crons AS (DELETE FROM agent_crons c USING gone "
            "WHERE c.assistant_id = gone.assistant_id AND c.owner = gone.owner) "
            "SELECT assistant_id FROM gone").format(scope.condition("a")), scope.params(id=assistant_id))
        if row is None:
            raise assistant_not_found(assistant_id)

    def _filter(self, scope: Scope, graph_id: str | None, name: str | None,
                metadata: dict[str, Any]) -> tuple[sql.Composable, dict[str, Any]]:
        return (sql.SQL("{} AND (%(graph_id)s::text IS NULL OR a.graph_id = %(graph_id)s) "
                        "AND (%(name)s::text IS NULL OR a.name = %(name)s) "
                        "AND a.metadata @> %(metadata)s").format(scope.condition("a")),
                scope.params(graph_id=graph_id, name=name, metadata=Jsonb(metadata)))

    async def search(self, scope: Scope, *, graph_id: str | None, name: str | None,
                     metadata: dict[str, Any], sort_by: str, descending: bool,
                     limit: int) -> list[dict[str, Any]]:
        if sort_by not in _ASSISTANT_SORTABLE:
            raise ValueError(sort_by)
        where, params = self._filter(scope, graph_id, name, metadata)
        async with self.pool.connection() as conn:
            return await (await conn.execute(sql.SQL(
                "SELECT a.* FROM agent_assistants a WHERE {} ORDER BY {} {} LIMIT %(limit)s").format(
                    where, sql.Identifier("a", sort_by), sql.SQL("DESC" if descending else "ASC")),
                {**params, "limit": limit})).fetchall()

    async def count(self, scope: Scope, *, graph_id: str | None, name: str | None,
                    metadata: dict[str, Any]) -> int:
        where, params = self._filter(scope, graph_id, name, metadata)
        row = await self._one(sql.SQL("SELECT count(*) AS n FROM agent_assistants a WHERE {}").format(
            where), params)
        return int(row["n"]) if row else 0

    async def versions(self, scope: Scope, assistant_id: str, metadata: dict[str, Any],
                       limit: int, offset: int) -> list[dict[str, Any]]:
        if await self.get(scope, assistant_id) is None:
            raise assistant_not_found(assistant_id)
        async with self.pool.connection() as conn:
            return await (await conn.execute(
                "SELECT * FROM agent_assistant_versions WHERE assistant_id = %s AND metadata @> %s "
                "ORDER BY version DESC LIMIT %s OFFSET %s",
                (assistant_id, Jsonb(metadata), limit, offset))).fetchall()


_CRON_SORTABLE = ("cron_id", "assistant_id", "thread_id", "created_at", "updated_at",
                  "next_run_date", "end_time")


class Crons(_Rows):
    """Crons as the data layer serves them: every statement scoped to the caller, as threads are;
    a cron on a thread only on one of the caller's threads (and deleted with it)."""

    async def create(self, scope: Scope, thread_scope: Scope | None,
                     cron: dict[str, Any], limit: int = 2**31 - 1) -> dict[str, Any]:
        """The caller's new cron; on a thread, one `thread_scope` reaches (404 otherwise); a 422
        when the owner holds `limit` crons already (counted under a lock of the owner's)."""
        thread_scope = thread_scope or scope
        async with self.pool.connection() as conn, conn.transaction():
            held = await (await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('agent_crons/' || %(owner)s, 0)), "
                "(SELECT count(*) FROM agent_crons WHERE owner = %(owner)s) AS n",
                {"owner": scope.owner or ""})).fetchone()
            if held["n"] >= limit:
                raise HTTPException(422, f"crons: this identity holds {held['n']} crons, the most "
                                         f"this server allows (MAX_CRONS_PER_OWNER={limit}): delete one")
            row = await (await conn.execute(sql.SQL(
                "INSERT INTO agent_crons (cron_id, owner, assistant_id, thread_id, schedule, "
                "timezone, end_time, enabled, on_run_completed, payload, metadata, next_run_date, "
                "auth_user) SELECT %(cron_id)s, %(owner)s, %(assistant_id)s, %(thread_id)s, "
                "%(schedule)s, %(timezone)s, %(end_time)s, %(enabled)s, %(on_run_completed)s, "
                "%(payload)s, %(metadata)s, %(next_run_date)s, %(auth_user)s "
                "WHERE %(thread_id)s::text IS NULL OR EXISTS "
                "(SELECT 1 FROM agent_threads t WHERE t.thread_id = %(thread_id)s AND {}) "
                "RETURNING *").format(thread_scope.condition("t")),
                thread_scope.params(**_cron_jsonb(cron), owner=scope.owner))).fetchone()
        if row is None:
            raise thread_not_found(str(cron["thread_id"]))
        return row

    async def get(self, scope: Scope, cron_id: str, *, lock: Any = None) -> dict[str, Any]:
        """The caller's cron (404 otherwise); `lock`: a connection in a transaction, the row locked."""
        query = sql.SQL("SELECT c.* FROM agent_crons c WHERE c.cron_id = %(id)s AND {}{}").format(
            scope.condition("c"), sql.SQL(" FOR UPDATE" if lock is not None else ""))
        if lock is not None:
            row = await (await lock.execute(query, scope.params(id=cron_id))).fetchone()
        else:
            async with self.pool.connection() as conn:
                row = await (await conn.execute(query, scope.params(id=cron_id))).fetchone()
        if row is None:
            raise cron_not_found(cron_id)
        return row

    async def update(self, scope: Scope, cron_id: str,
                     change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """Apply `change` (the current row -> the columns to set) to the caller's cron, its row
        locked meanwhile."""
        async with self.pool.connection() as conn, conn.transaction():
            current = await self.get(scope, cron_id, lock=conn)
            columns = change(current)
            assignments = sql.SQL(", ").join([
                *(sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name))
                  for name in columns), sql.SQL("updated_at = now()")])
            return await (await conn.execute(sql.SQL(
                "UPDATE agent_crons SET {} WHERE cron_id = %(cron_id)s "
                "RETURNING *").format(assignments),
                {**_cron_jsonb(columns), "cron_id": cron_id})).fetchone()

    async def delete(self, scope: Scope, cron_id: str) -> None:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(sql.SQL(
                "DELETE FROM agent_crons c WHERE c.cron_id = %(id)s AND {} RETURNING c.cron_id").format(
                    scope.condition("c")), scope.params(id=cron_id))).fetchone()
        if row is None:
            raise cron_not_found(cron_id)

    @staticmethod
    def _filter(scope: Scope, assistant_id: str | None, thread_id: str | None,
                metadata: dict[str, Any], enabled: bool | None = None
                ) -> tuple[sql.Composable, dict[str, Any]]:
        return (sql.SQL("{} AND (%(assistant_id)s::text IS NULL OR c.assistant_id = %(assistant_id)s) "
                        "AND (%(thread_id)s::text IS NULL OR c.thread_id = %(thread_id)s) "
                        "AND (%(enabled)s::boolean IS NULL OR c.enabled = %(enabled)s) "
                        "AND c.metadata @> %(metadata)s").format(scope.condition("c")),
                scope.params(assistant_id=assistant_id, thread_id=thread_id, enabled=enabled,
                             metadata=Jsonb(metadata)))

    async def search(self, scope: Scope, *, assistant_id: str | None, thread_id: str | None,
                     enabled: bool | None, metadata: dict[str, Any], sort_by: str,
                     descending: bool, limit: int, offset: int) -> list[dict[str, Any]]:
        if sort_by not in _CRON_SORTABLE:
            raise ValueError(sort_by)
        where, params = self._filter(scope, assistant_id, thread_id, metadata, enabled)
        async with self.pool.connection() as conn:
            return await (await conn.execute(sql.SQL(
                "SELECT c.* FROM agent_crons c WHERE {} ORDER BY {} {}, c.cron_id "
                "LIMIT %(limit)s OFFSET %(offset)s").format(
                    where, sql.Identifier("c", sort_by), sql.SQL("DESC" if descending else "ASC")),
                {**params, "limit": limit, "offset": offset})).fetchall()

    async def count(self, scope: Scope, *, assistant_id: str | None, thread_id: str | None,
                    metadata: dict[str, Any]) -> int:
        where, params = self._filter(scope, assistant_id, thread_id, metadata)
        async with self.pool.connection() as conn:
            row = await (await conn.execute(sql.SQL(
                "SELECT count(*) AS n FROM agent_crons c WHERE {}").format(where), params)).fetchone()
        return int(row["n"])


def cron_not_found(cron_id: str) -> HTTPException:
    return HTTPException(404, f"cron {cron_id} not found")


def _cron_jsonb(values: dict[str, Any]) -> dict[str, Any]:
    return {k: Jsonb(v) if k in ("payload", "metadata", "auth_user") and v is not None else v
            for k, v in values.items()}


def assistant_not_found(assistant_id: str) -> HTTPException:
    return HTTPException(404, f"assistant {assistant_id} not found")


def _ttl(ttl: dict[str, Any] | None) -> dict[str, Any]:
    """A thread TTL's statement parameters: the TTL as stored, and its length in seconds."""
    if ttl is None:
        return {"ttl": None, "seconds": None}
    return {"ttl": Jsonb(ttl), "seconds": float(ttl["ttl"]) * 60}


def _jsonb(values: dict[str, Any]) -> dict[str, Any]:
    return {k: Jsonb(v) if k in ("config", "context", "metadata") else v for k, v in values.items()}
