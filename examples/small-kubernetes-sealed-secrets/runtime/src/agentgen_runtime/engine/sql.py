"""The engine's SQL: the runs table's migrations (`SCHEMA`, registered by schema.py), the
functions that create and cancel runs in one round trip (`FUNCTIONS`), and the statements that
claim and finish a run (fenced by worker and attempt). What they guarantee: engine/runs.py."""

CHANNEL = "agent_runs"
ACTIVE = ("pending", "running")
TERMINAL = ("success", "error", "timeout", "interrupted")
STRATEGIES = ("reject", "enqueue", "interrupt", "rollback")

# Idempotent migrations of the runs table (0.2 had run_id, thread_id, assistant_id, status,
# metadata, error, created_at, updated_at).
SCHEMA = """
ALTER TABLE agent_runs ALTER COLUMN thread_id DROP NOT NULL;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS seq bigserial;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS graph_id text;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS kwargs jsonb NOT NULL DEFAULT '{}';
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS multitask_strategy text NOT NULL DEFAULT 'enqueue';
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS record_events boolean NOT NULL DEFAULT false;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS attempt integer NOT NULL DEFAULT 0;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS worker text;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS lease_until timestamptz;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS started_at timestamptz;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS cancel text;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS output jsonb;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS not_before timestamptz;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS owner text;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS idempotency_key text;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS request_hash text;
ALTER TABLE agent_runs ADD COLUMN IF NOT EXISTS webhook_policy text;
CREATE UNIQUE INDEX IF NOT EXISTS agent_runs_idempotency ON agent_runs (coalesce(owner, ''), idempotency_key)
    WHERE idempotency_key IS NOT NULL;
UPDATE agent_runs r SET owner = t.owner FROM agent_threads t
    WHERE r.owner IS NULL AND r.thread_id = t.thread_id AND r.status IN ('pending', 'running');
CREATE UNIQUE INDEX IF NOT EXISTS agent_runs_one_running ON agent_runs (thread_id)
    WHERE status = 'running';
CREATE INDEX IF NOT EXISTS agent_runs_pending ON agent_runs (seq) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS agent_runs_lease ON agent_runs (lease_until) WHERE status = 'running';
CREATE TABLE IF NOT EXISTS agent_run_events (
    run_id text NOT NULL REFERENCES agent_runs ON DELETE CASCADE,
    seq integer NOT NULL,
    event text NOT NULL,
    data jsonb,
    PRIMARY KEY (run_id, seq)
);
"""

# A pending run is claimable when its thread has no running run and no older pending one, and its
# delay (after_seconds) has passed. A delayed run holds its thread's later runs behind it.
CLAIM = """
UPDATE agent_runs r SET status = 'running', worker = %(worker)s, attempt = r.attempt + 1,
    lease_until = now() + make_interval(secs => %(lease)s), started_at = now(), updated_at = now()
WHERE r.run_id IN (
    SELECT c.run_id FROM agent_runs c
    WHERE c.status = 'pending' AND (c.not_before IS NULL OR c.not_before <= now())
      AND NOT EXISTS (SELECT 1 FROM agent_runs o
                      WHERE o.thread_id = c.thread_id AND o.status = 'running')
      AND NOT EXISTS (SELECT 1 FROM agent_runs o
                      WHERE o.thread_id = c.thread_id AND o.status = 'pending' AND o.seq < c.seq)
    ORDER BY c.seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING r.*, extract(epoch FROM now() - r.created_at) AS waited
"""

# Creating a run is one call (one round trip): the thread's row is locked, the strategy applied to
# its active runs (each statement of a PL/pgSQL function sees what committed before it, so the runs
# a concurrent creator inserted before it released the lock are seen), the run inserted: `running`,
# claimed by the caller (attempt 1, its lease), when nothing is ahead of it on its thread and the
# caller passed its worker (it has room), `pending` otherwise. created_at is clock_timestamp(), taken
# after the lock (not the transaction's start): it orders a thread's runs as the engine takes them.
# Notifies `c:<id>` for each cancelled running run, `d:<id>` for each cancelled pending one and
# `q:<worker>` when the run is pending. SQLSTATE AGR01: rejected (multitask_strategy=reject);
# AGR02: a resume (command.resume) sent while a run is in progress on the thread (enqueue); AGR03:
# an Idempotency-Key already used (within the window) for a request with another body. A key used
# for the same request returns the run it created (RunCreate's `idempotency`).
FUNCTIONS = [
    # (0.3's signature: replaced by the one with the idempotency key and the webhook policy, whose
    # defaults still answer a call in the old form)
    "DROP FUNCTION IF EXISTS agent_run_create(text, text, text, text, jsonb, jsonb, text, boolean, "
    "text, text, double precision, text, boolean, jsonb)", """
CREATE OR REPLACE FUNCTION agent_run_cancel(p_ids text[], p_action text)
RETURNS SETOF text LANGUAGE plpgsql AS $fn$
DECLARE
    v_pending text[];
    v_running text[];
BEGIN
    SELECT coalesce(array_agg(run_id) FILTER (WHERE status = 'pending'), '{}'),
           coalesce(array_agg(run_id) FILTER (WHERE status = 'running'), '{}')
      INTO v_pending, v_running
      FROM (SELECT run_id, status FROM agent_runs
            WHERE run_id = ANY(p_ids) AND status IN ('pending', 'running') FOR UPDATE) active;
    IF p_action = 'rollback' THEN
        DELETE FROM agent_runs WHERE run_id = ANY(v_pending);
    ELSE
        UPDATE agent_runs SET status = 'interrupted', updated_at = now()
        WHERE run_id = ANY(v_pending);
    END IF;
    UPDATE agent_runs SET cancel = p_action WHERE run_id = ANY(v_running);
    PERFORM pg_notify('agent_runs', 'd:' || id) FROM unnest(v_pending) id;
    PERFORM pg_notify('agent_runs', 'c:' || id) FROM unnest(v_running) id;
    RETURN QUERY SELECT unnest(v_pending || v_running);
END
$fn$
""", """
CREATE OR REPLACE FUNCTION agent_run_create(
    p_run_id text, p_thread_id text, p_assistant_id text, p_graph_id text, p_metadata jsonb,
    p_kwargs jsonb, p_strategy text, p_record_events boolean, p_worker text, p_caller text,
    p_lease double precision, p_owner text, p_create_thread boolean, p_thread_filter jsonb,
    p_idempotency_key text DEFAULT NULL, p_request_hash text DEFAULT NULL,
    p_idempotency_window double precision DEFAULT 86400, p_webhook_policy text DEFAULT NULL)
RETURNS SETOF agent_runs LANGUAGE plpgsql AS $fn$
DECLARE
    v_active text[] := '{}';
    v_claim boolean;
    v_delay double precision := coalesce((p_kwargs ->> 'after_seconds')::double precision, 0);
    v_prior agent_runs;
BEGIN
    IF p_idempotency_key IS NOT NULL THEN
        -- one creator of a key at a time (until it commits); a key older than the window is free
        PERFORM pg_advisory_xact_lock(hashtextextended(coalesce(p_owner, '') || '/' || p_idempotency_key, 7));
        UPDATE agent_runs SET idempotency_key = NULL
        WHERE coalesce(owner, '') = coalesce(p_owner, '') AND idempotency_key = p_idempotency_key
          AND created_at < clock_timestamp() - make_interval(secs => p_idempotency_window);
        SELECT * INTO v_prior FROM agent_runs
        WHERE coalesce(owner, '') = coalesce(p_owner, '') AND idempotency_key = p_idempotency_key;
        IF FOUND THEN
            IF v_prior.request_hash IS DISTINCT FROM p_request_hash THEN
                RAISE EXCEPTION 'Idempotency-Key % was used for another request (its run is %)',
                    p_idempotency_key, v_prior.run_id USING ERRCODE = 'AGR03';
            END IF;
            RETURN NEXT v_prior;  -- the first request's run: created once
            RETURN;
        END IF;
    END IF;
    IF p_thread_id IS NOT NULL THEN
        -- the caller's thread, locked (see ownership.py): AGT04 when it is not the caller's; one it
        -- creates starts with the run's metadata (as on the Platform)
        PERFORM agent_thread_for_run(p_thread_id, p_owner, p_graph_id, p_assistant_id,
            p_create_thread, p_metadata, p_thread_filter);
        SELECT coalesce(array_agg(run_id), '{}') INTO v_active FROM agent_runs
        WHERE thread_id = p_thread_id AND status IN ('pending', 'running');
        IF cardinality(v_active) > 0 AND p_strategy = 'reject' THEN
            RAISE EXCEPTION 'thread % already has a run in progress (multitask_strategy=reject)',
                p_thread_id USING ERRCODE = 'AGR01';
        ELSIF cardinality(v_active) > 0 AND p_strategy = 'enqueue'
              AND coalesce(p_kwargs -> 'command' ? 'resume', false) THEN
            -- a resume queued behind a run would answer an interrupt that run may already have
            -- resumed: the client must learn that its decision was not applied
            RAISE EXCEPTION 'thread % already has a run in progress: resume the interrupt it '
                'leaves once it ends', p_thread_id USING ERRCODE = 'AGR02';
        ELSIF cardinality(v_active) > 0 AND p_strategy IN ('interrupt', 'rollback') THEN
            PERFORM agent_run_cancel(v_active, p_strategy);
        END IF;
    END IF;
    v_claim := p_worker IS NOT NULL AND cardinality(v_active) = 0 AND v_delay <= 0;
    IF NOT v_claim THEN
        PERFORM pg_notify('agent_runs', 'q:' || p_caller);
    END IF;
    RETURN QUERY INSERT INTO agent_runs (
        run_id, thread_id, assistant_id, graph_id, status, metadata, kwargs, multitask_strategy,
        record_events, created_at, updated_at, worker, attempt, lease_until, started_at,
        not_before, owner, idempotency_key, request_hash, webhook_policy)
    VALUES (p_run_id, p_thread_id, p_assistant_id, p_graph_id,
        CASE WHEN v_claim THEN 'running' ELSE 'pending' END, p_metadata, p_kwargs, p_strategy,
        p_record_events, clock_timestamp(), clock_timestamp(),
        CASE WHEN v_claim THEN p_worker END, CASE WHEN v_claim THEN 1 ELSE 0 END,
        CASE WHEN v_claim THEN now() + make_interval(secs => p_lease) END,
        CASE WHEN v_claim THEN clock_timestamp() END,
        CASE WHEN v_delay > 0 THEN clock_timestamp() + make_interval(secs => v_delay) END,
        p_owner, p_idempotency_key, p_request_hash, p_webhook_policy)
    RETURNING *;
END
$fn$
"""]
CREATE = ("SELECT * FROM agent_run_create(%(run_id)s, %(thread_id)s, %(assistant_id)s, "
           "%(graph_id)s, %(metadata)s, %(kwargs)s, %(strategy)s, %(record_events)s, %(worker)s, "
           "%(caller)s, %(lease)s, %(owner)s, %(create_thread)s, %(thread_filter)s, "
           "%(idempotency_key)s, %(request_hash)s, %(idempotency_window)s, %(webhook_policy)s)")

# A run's outcome, fenced by the worker and attempt holding it; wakes its remote readers, and the
# workers when a run of the same thread waits for this one.
FINISH = """
WITH done AS (
    UPDATE agent_runs SET status = %(status)s, output = %(output)s, error = %(error)s, worker = NULL,
        lease_until = NULL, cancel = NULL, updated_at = now()
    WHERE run_id = %(run_id)s AND worker = %(worker)s AND attempt = %(attempt)s
      AND status = 'running'
    RETURNING *)
SELECT done.*, pg_notify(%(channel)s, 'd:' || done.run_id)::text AS notified,
    (SELECT pg_notify(%(channel)s, 'q')::text FROM agent_runs p
     WHERE p.thread_id = done.thread_id AND p.status = 'pending' LIMIT 1) AS woken
FROM done
"""
