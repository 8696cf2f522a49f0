"""Crons: schedules whose every tick becomes a run of the engine, exactly once across every process.

- **One process takes a tick.** Each process polls for due crons (enabled, `next_run_date` passed,
  before their `end_time`) with `FOR UPDATE SKIP LOCKED`, and in the same transaction inserts the
  tick's run (pending: any worker claims it, and strategies, leases and takeover apply as to every
  run) and moves `next_run_date` on. The run exists if and only if the schedule moved on. A process
  killed mid-tick has its transaction rolled back with its connection; one stalled mid-tick
  (SIGSTOP, a blocked event loop) has it ended by the server (`idle_in_transaction_session_timeout`):
  either way another process takes the tick, once.
- **Missed ticks are not replayed as a burst.** A cron overdue (every process down, the database
  down) runs once; its next run is the schedule's next time after now, as on the Platform.
- **A tick that cannot start** (its assistant's graph left langgraph.json, its thread busy under
  `multitask_strategy=reject`) is consumed, logged, counted (`agent_cron_runs_total{outcome=
  "failed"}`) and recorded on the cron (`last_error`); the next tick tries again. A tick counts
  against its creator's rate limit like a request (beyond it: not run, recorded as such).
- A cron without a thread runs each tick statelessly (`on_run_completed=delete`, the default: no
  thread is kept) or on a new thread that is kept (`keep`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import HTTPException

from ..auth.handlers import AuthUser, stamp_user
from ..engine.runs import RunRejected, ThreadNotFound
from ..models import CronCreate, CronRun, RunCreate
from ..observability import CRON_RUNS
from ..ownership import Scope
from ..service import Service, with_assistant

log = logging.getLogger("agentgen_runtime.crons")

POLL_SECONDS = 1.0  # the longest a due tick waits for a process to notice it
BATCH = 100  # ticks taken per transaction
BUSY_SECONDS = 0.05  # a due tick another process holds is looked at again after this
# How long the server lets a tick's transaction sit idle before ending it (and releasing its crons):
# a process stalled mid-tick delays its crons' ticks by at most this.
STALLED_TICK_SECONDS = 10


def next_run(schedule: str, after: datetime, timezone: str | None = None) -> datetime:
    """The schedule's first time after `after` (UTC), read in `timezone` (default UTC). Raises
    ValueError when the schedule never fires (e.g. on February 30)."""
    from croniter import CroniterBadDateError, croniter

    base = after.astimezone(ZoneInfo(timezone)) if timezone else after.astimezone(UTC)
    try:
        return croniter(schedule, base).get_next(datetime).astimezone(UTC)
    except CroniterBadDateError:
        raise ValueError(f"schedule {schedule!r} never fires") from None


def first_run(schedule: str, timezone: str | None) -> datetime:
    try:
        return next_run(schedule, datetime.now(UTC), timezone)
    except ValueError as exc:
        raise HTTPException(422, f"schedule: {exc}") from None


def run_payload(body: CronRun, cron_id: str, assistant_id: str) -> dict[str, Any]:
    """What a cron stores for its runs (answered as its `payload`, as the Platform does): the run
    fields it was given, its assistant, and `config.configurable.cron_id`."""
    payload = body.model_dump(mode="json", exclude_none=True, include=set(CronRun.model_fields))
    config = payload["config"] = stamp_user(payload.get("config"), None)  # (set at each tick)
    config["configurable"] = {**config["configurable"], "cron_id": cron_id}
    if isinstance(body, CronCreate):
        payload["schedule"] = body.schedule
    return {**payload, "assistant_id": assistant_id}


def cron_json(row: dict[str, Any]) -> dict[str, Any]:
    """A cron as the Platform answers it."""
    def iso(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return {"cron_id": row["cron_id"], "assistant_id": row["assistant_id"],
            "thread_id": row["thread_id"],
            "user_id": (row.get("auth_user") or {}).get("identity"), "end_time": iso(row["end_time"]),
            "schedule": row["schedule"], "timezone": row["timezone"], "payload": row["payload"],
            "next_run_date": iso(row["next_run_date"]), "metadata": row["metadata"],
            "on_run_completed": row["on_run_completed"], "enabled": row["enabled"],
            "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"])}


# Due crons, locked by the process taking their tick (others skip them), with the database's clock.
_DUE = """
SELECT c.*, now() AS now FROM agent_crons c
WHERE c.enabled AND c.next_run_date <= now() AND (c.end_time IS NULL OR c.end_time > now())
ORDER BY c.next_run_date LIMIT %s FOR UPDATE SKIP LOCKED
"""


class CronScheduler:
    """Takes the due ticks of every cron (see the module's docstring): one loop per process."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc

    async def run(self) -> None:
        while True:
            if self.svc.engine.draining:  # shutting down: the other processes take the ticks
                await asyncio.sleep(POLL_SECONDS)
                continue
            try:
                taken = await self.tick()
                if taken < BATCH:
                    await asyncio.sleep(await self._until_next(taken))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the database is down: the next poll retries
                log.debug("cron tick failed: %s", exc)
                await asyncio.sleep(POLL_SECONDS)

    async def _until_next(self, taken: int) -> float:
        """Seconds until the next tick of any cron, at most POLL_SECONDS (a cron created or changed
        meanwhile, by any process, is seen by then): every process wakes on time for a tick, and
        the row locks decide which one takes it. A tick due but taken by another process (its
        transaction not committed yet) is looked at again shortly, not in a busy loop."""
        async with self.svc.pool.connection() as conn:
            row = await (await conn.execute(
                "SELECT extract(epoch FROM min(next_run_date) - now())::float AS wait FROM agent_crons "
                "WHERE enabled AND (end_time IS NULL OR end_time > now())")).fetchone()
        wait = row["wait"]
        if wait is None:
            return POLL_SECONDS
        return min(POLL_SECONDS, max(0.0 if taken else BUSY_SECONDS, wait))

    async def tick(self) -> int:
        """Take the due ticks: each one's run created and its cron moved on, in one transaction.
        Returns how many ticks were taken."""
        async with self.svc.pool.connection() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL idle_in_transaction_session_timeout = "
                               f"'{STALLED_TICK_SECONDS}s'")
            due = await (await conn.execute(_DUE, (BATCH,))).fetchall()
            for cron in due:
                run_id, error = None, None
                try:
                    async with conn.transaction():  # a savepoint: a refused run aborts only itself
                        run_id = await self._start(conn, cron)
                except (RunRejected, ThreadNotFound, HTTPException, ValueError) as exc:
                    error = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
                    log.warning("cron %s: its run at %s was not created: %s", cron["cron_id"],
                                cron["next_run_date"].isoformat(), error)
                CRON_RUNS.labels("failed" if error else "created").inc()
                try:
                    following = next_run(cron["schedule"], cron["now"], cron["timezone"])
                except ValueError:
                    following = None
                await conn.execute(
                    "UPDATE agent_crons SET next_run_date = coalesce(%s, next_run_date), "
                    "enabled = enabled AND %s::timestamptz IS NOT NULL, runs = runs + 1, "
                    "last_run_id = coalesce(%s, last_run_id), last_error = %s WHERE cron_id = %s",
                    (following, following, run_id, error, cron["cron_id"]))
        return len(due)

    async def _start(self, conn: Any, cron: dict[str, Any]) -> str:
        """Insert the tick's run (pending) on `conn`; returns its id."""
        payload = dict(cron["payload"])
        payload.pop("schedule", None)
        body = RunCreate.model_validate({**payload, "metadata": cron["metadata"]})
        graph, assistant = await self.svc.assistant(Scope(cron["owner"]), body.assistant_id)
        body = with_assistant(body, assistant)
        thread_id, create_thread = cron["thread_id"], False
        if thread_id is None and cron["on_run_completed"] == "keep":
            thread_id, create_thread = str(uuid.uuid4()), True
        run_id = str(uuid.uuid4())
        kwargs = body.model_dump(mode="json", exclude_none=True)
        user = AuthUser(cron["auth_user"]) if cron.get("auth_user") else None
        if self.svc.limiter is not None:  # a tick is a request of its creator's (429: not run)
            await self.svc.limiter.check(cron["owner"] if user is None else f"user:{user.identity}")
        kwargs["config"] = stamp_user(kwargs.get("config"), user)  # run as its creator
        await self.svc.engine.queue(
            conn, run_id=run_id, thread_id=thread_id, assistant_id=assistant["assistant_id"],
            graph_id=graph.graph_id, kwargs=kwargs, metadata=body.metadata,
            strategy=body.multitask_strategy, owner=cron["owner"],
            create_thread=create_thread,
            webhook_policy=self.svc.webhooks.fingerprint if body.webhook else None)
        return run_id


def start(svc: Service) -> asyncio.Task[None]:
    return asyncio.create_task(CronScheduler(svc).run(), name="cron-scheduler")

