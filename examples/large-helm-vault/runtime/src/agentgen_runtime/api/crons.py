"""Crons: schedules of runs (without a thread, or on one of the caller's threads): create, get,
update, delete, search, count; each the caller's own. The ticks are taken by surfaces/crons.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Response

from ..auth.handlers import stamp_user
from ..models import CronCount, CronCreate, CronRun, CronSearch, CronUpdate
from ..ownership import Scope
from ..service import Service
from ..surfaces.crons import cron_json, first_run, next_run, run_payload
from .deps import Caller, Svc

router = APIRouter(tags=["crons"])


def _bounded(svc: Service, schedule: str | None) -> None:
    """A schedule firing more than once a minute (a seconds field other than one number) is a 422
    unless CRON_ALLOW_SECONDS is true: one request would otherwise start 60 runs a minute."""
    fields = (schedule or "").split()
    if len(fields) > 5 and not svc.settings.cron_allow_seconds and not (
            fields[5].isdigit() and int(fields[5]) < 60):
        raise HTTPException(422, f"schedule: {schedule!r} fires more than once a minute (its sixth, "
                                 "seconds field): refused unless the server sets CRON_ALLOW_SECONDS=true")


async def _create(svc: Service, caller: Scope, body: CronCreate, thread_id: str | None) -> dict[str, Any]:
    _bounded(svc, body.schedule)
    cron_id = str(uuid.uuid4())
    value = {"payload": body.model_dump(mode="json", exclude_none=True), "schedule": body.schedule,
             "cron_id": cron_id, "thread_id": thread_id,
             "user_id": caller.user.identity if caller.user else None,
             "end_time": body.end_time, "metadata": body.metadata or {}}
    scope = await caller.authorize("crons", "create", value)
    body = body.model_copy(update={"metadata": value.get("metadata") or {}})
    readable = caller
    if svc.system_graph(body.assistant_id) is None:  # (a graph's own assistant: anyone's)
        readable = await caller.authorize("assistants", "read", {"assistant_id": body.assistant_id})
    _, assistant = await svc.assistant(readable, body.assistant_id)
    thread_scope = None
    if thread_id is not None:
        thread_scope = await caller.authorize("threads", "read", {"thread_id": thread_id})
    await svc.check_webhook(body.webhook)
    row = await svc.crons.create(scope, thread_scope, {
        "cron_id": cron_id, "assistant_id": assistant["assistant_id"], "thread_id": thread_id,
        "schedule": body.schedule, "timezone": body.timezone, "end_time": body.end_time,
        "enabled": body.enabled,
        "on_run_completed": None if thread_id else (body.on_run_completed or "delete"),
        "payload": run_payload(body, cron_id, assistant["assistant_id"]),
        "metadata": body.metadata or {},
        "next_run_date": first_run(body.schedule, body.timezone),
        "auth_user": caller.user.dict() if caller.user else None}, limit=svc.settings.max_crons_per_owner)
    return cron_json(row)


@router.post("/runs/crons")
async def create_cron(body: CronCreate, svc: Svc, caller: Caller) -> dict[str, Any]:
    return await _create(svc, caller, body, None)


@router.post("/threads/{thread_id}/runs/crons")
async def create_thread_cron(thread_id: str, body: CronCreate, svc: Svc, caller: Caller) -> dict[str, Any]:
    if body.on_run_completed is not None:
        raise HTTPException(422, "on_run_completed: only for a cron without a thread (this one runs "
                                 "on its thread, which is kept)")
    return await _create(svc, caller, body, thread_id)


def _assistant_id(svc: Service, assistant_id: str | None) -> str | None:
    """A filter's assistant: a graph's name stands for its system assistant."""
    graph = svc.system_graph(assistant_id) if assistant_id else None
    return graph.assistant_id if graph is not None else assistant_id


@router.post("/runs/crons/search")
async def search_crons(body: CronSearch, svc: Svc, caller: Caller) -> list[dict[str, Any]]:
    scope = await caller.authorize("crons", "search", {
        "assistant_id": body.assistant_id, "thread_id": body.thread_id, "limit": body.limit,
        "offset": body.offset, "metadata": body.metadata})
    rows = await svc.crons.search(
        scope, assistant_id=_assistant_id(svc, body.assistant_id), thread_id=body.thread_id,
        enabled=body.enabled, metadata=body.metadata, sort_by=body.sort_by,
        descending=body.sort_order == "desc", limit=body.limit, offset=body.offset)
    found = [cron_json(row) for row in rows]
    if body.select:
        found = [{key: cron[key] for key in body.select} for cron in found]
    return found


@router.post("/runs/crons/count")
async def count_crons(body: CronCount, svc: Svc, caller: Caller) -> int:
    scope = await caller.authorize("crons", "search", {
        "assistant_id": body.assistant_id, "thread_id": body.thread_id, "limit": 0, "offset": 0,
        "metadata": body.metadata})
    return await svc.crons.count(scope, assistant_id=_assistant_id(svc, body.assistant_id),
                                 thread_id=body.thread_id, metadata=body.metadata)


@router.get("/runs/crons/{cron_id}")
async def get_cron(cron_id: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    scope = await caller.authorize("crons", "read", {"cron_id": cron_id})
    return cron_json(await svc.crons.get(scope, cron_id))


@router.patch("/runs/crons/{cron_id}")
async def update_cron(cron_id: str, body: CronUpdate, svc: Svc, caller: Caller) -> dict[str, Any]:
    if not body.model_fields_set:
        raise HTTPException(400, "nothing to update: send at least one field")
    _bounded(svc, body.schedule)
    given = body.model_dump(mode="json", include=body.model_fields_set)
    value = {"cron_id": cron_id, **{k: given.get(k) for k in (
        "payload", "schedule", "end_time", "enabled", "metadata")}}
    if value["metadata"] is not None:
        value["metadata"] = body.metadata
    scope = await caller.authorize("crons", "update", value)
    await svc.check_webhook(body.webhook)

    def change(current: dict[str, Any]) -> dict[str, Any]:
        columns: dict[str, Any] = {key: given[key] for key in ("schedule", "timezone", "enabled",
                                                               "on_run_completed")
                                   if given.get(key) is not None}
        if "end_time" in given:
            columns["end_time"] = body.end_time  # null clears it
        if "on_run_completed" in columns and current["thread_id"] is not None:
            raise HTTPException(422, "on_run_completed: only for a cron without a thread")
        run_fields = {key: value for key, value in given.items()
                      if key in CronRun.model_fields and key != "metadata" and value is not None}
        if run_fields or body.metadata is not None:
            payload = {**current["payload"], **run_fields}
            if "config" in run_fields:  # the cron's id stays in its runs' configurable
                config = stamp_user(run_fields["config"], None)  # (its creator's, at each tick)
                payload["config"] = {**config, "configurable": {**config["configurable"],
                                                                 "cron_id": current["cron_id"]}}
            if body.metadata is not None:
                columns["metadata"] = {**current["metadata"], **body.metadata}
                payload["metadata"] = columns["metadata"]
            columns["payload"] = payload
        if "schedule" in columns:
            payload = columns.setdefault("payload", dict(current["payload"]))
            payload["schedule"] = columns["schedule"]
        schedule = columns.get("schedule", current["schedule"])
        timezone = columns.get("timezone", current["timezone"])
        if ("schedule" in columns or "timezone" in columns
                or (columns.get("enabled") and not current["enabled"])):
            # re-enabled: from now on (the ticks it missed while disabled are not run)
            try:
                columns["next_run_date"] = next_run(schedule, datetime.now(UTC), timezone)
            except ValueError as exc:
                raise HTTPException(422, f"schedule: {exc}") from None
        return columns

    return cron_json(await svc.crons.update(scope, cron_id, change))


@router.delete("/runs/crons/{cron_id}", status_code=204)
async def delete_cron(cron_id: str, svc: Svc, caller: Caller) -> Response:
    await svc.crons.delete(await caller.authorize("crons", "delete", {"cron_id": cron_id}), cron_id)
    return Response(status_code=204)
