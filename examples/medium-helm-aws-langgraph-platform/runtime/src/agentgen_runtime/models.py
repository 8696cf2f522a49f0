"""What clients send: the request bodies, validated at the edge (unknown fields, NUL characters,
non-finite numbers and over-deep values are a 422 naming the field, before anything is written)."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

StreamMode = Literal["values", "updates", "messages", "messages-tuple", "custom", "events", "debug",
                     "tasks", "checkpoints"]


# What a client may send in any JSON value: PostgreSQL cannot store NUL in text or jsonb, nor
# NaN/Infinity in jsonb, and a deeply nested value would fail whoever reads it back.
MAX_JSON_DEPTH = 32
MAX_OFFSET = 2**31 - 1
MAX_TTL_MINUTES = 10**7  # ~19 years: beyond it, a timestamp PostgreSQL cannot hold


def json_problem(value: Any, where: str) -> str | None:
    """Why a client's JSON value cannot be taken (naming where in it), or None."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return f"{path}: nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(item, str):
            if "\x00" in item:
                return f"{path}: contains a NUL character"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{path}: {item} is not a finite number"
        elif isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str) and "\x00" in key:
                    return f"{path}: a key contains a NUL character"
                stack.append((inner, f"{path}.{key}", depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((inner, f"{path}[{i}]", depth + 1) for i, inner in enumerate(item))
    return None


def parse_json(raw: bytes | str, where: str = "body") -> Any:
    """A client's JSON text that no pydantic model reads, held to what every body is
    (json_problem): raises ValueError naming why, never RecursionError."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ValueError(f"{where}: nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # (JSONDecodeError, UnicodeDecodeError)
        raise ValueError(f"{where}: not valid JSON ({exc})") from None
    problem = json_problem(value, where)
    if problem is not None:
        raise ValueError(problem)
    return value


class _Body(BaseModel):
    # An unknown field is a 422 naming it: silently dropping an option the client relies on
    # (a webhook, a resumable stream) would be worse.
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        problem = json_problem(data, "body")
        if problem is not None:
            raise ValueError(problem)
        return data


class ThreadTTL(_Body):
    """A thread's time to live: `strategy` is applied `ttl` minutes after it is set (by
    threads.create or threads.update), unless a run is in progress then."""
    ttl: float = Field(gt=0, le=10**7)
    strategy: Literal["delete", "keep_latest"] = "delete"


class SuperstepUpdate(_Body):
    values: dict[str, Any] | list[Any] | None = None
    as_node: str
    # a Command in a superstep is not applied by this runtime: refused (422) rather than dropped
    command: None = None


class Superstep(_Body):
    updates: list[SuperstepUpdate] = Field(min_length=1)


class ThreadCreate(_Body):
    thread_id: str | None = Field(None, max_length=128)
    metadata: dict[str, Any] = {}
    if_exists: Literal["raise", "do_nothing"] = "raise"
    # the thread's history, applied step by step when it is created (copying a thread between
    # deployments); needs `graph_id` (in metadata, as the SDK sends it)
    supersteps: list[Superstep] | None = Field(None, max_length=1000)
    ttl: ThreadTTL | None = None


ThreadStatus = Literal["idle", "busy", "interrupted", "error"]
THREAD_FIELDS = ("thread_id", "created_at", "updated_at", "state_updated_at", "metadata", "status",
                 "config", "values", "interrupts", "error")
EXTRACTABLE = ("values", "metadata", "config", "interrupts")


class ThreadSearch(_Body):
    metadata: dict[str, Any] = {}
    # threads whose current values contain these (as PostgreSQL's jsonb @> reads containment)
    values: dict[str, Any] | None = None
    ids: list[str] | None = None
    status: ThreadStatus | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    sort_by: Literal["thread_id", "created_at", "updated_at", "state_updated_at", "status"] = "created_at"
    sort_order: Literal["asc", "desc"] = "desc"
    select: list[Literal[THREAD_FIELDS]] | None = None  # type: ignore[valid-type]
    # {alias: path}: `values.messages[-1].content` read from each thread, under `extracted`
    extract: dict[str, str] | None = Field(None, max_length=10)

    @model_validator(mode="after")
    def _paths(self) -> ThreadSearch:
        for alias, path in (self.extract or {}).items():
            if not alias.isidentifier() or alias in THREAD_FIELDS:
                raise ValueError(f"extract: {alias!r} must be an identifier and not a thread field")
            if path.split(".")[0].split("[")[0] not in EXTRACTABLE:
                raise ValueError(f"extract: {path!r} must start with one of {', '.join(EXTRACTABLE)}")
        return self


class ThreadUpdate(_Body):
    metadata: dict[str, Any] = {}
    ttl: ThreadTTL | None = None


class ThreadCount(_Body):
    metadata: dict[str, Any] = {}
    values: dict[str, Any] | None = None
    status: ThreadStatus | None = None


class ThreadPrune(_Body):
    thread_ids: list[str] = Field(max_length=1000)
    strategy: Literal["delete", "keep_latest"] = "delete"


class StateUpdate(_Body):
    values: dict[str, Any] | list[Any] | None = None
    as_node: str | None = None
    checkpoint_id: str | None = None
    checkpoint: dict[str, Any] | None = None


class HistoryQuery(_Body):
    limit: int = Field(10, ge=1, le=1000)
    before: dict[str, Any] | str | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None


class AssistantSearch(_Body):
    graph_id: str | None = None
    name: str | None = None
    metadata: dict[str, Any] = {}
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    sort_by: Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[Literal["assistant_id", "graph_id", "name", "description", "config", "context",
                         "metadata", "version", "created_at", "updated_at"]] | None = None


class AssistantCreate(_Body):
    graph_id: str = Field(max_length=256)
    assistant_id: str | None = Field(None, max_length=128)
    config: dict[str, Any] = {}
    context: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    if_exists: Literal["raise", "do_nothing"] = "raise"
    name: str | None = Field(None, max_length=1024)
    description: str | None = Field(None, max_length=10_000)


class AssistantUpdate(_Body):
    graph_id: str | None = Field(None, max_length=256)
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    name: str | None = Field(None, max_length=1024)
    description: str | None = Field(None, max_length=10_000)


class AssistantCount(_Body):
    graph_id: str | None = None
    name: str | None = None
    metadata: dict[str, Any] = {}


class AssistantVersions(_Body):
    metadata: dict[str, Any] = {}
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)


class AssistantLatest(_Body):
    version: int = Field(ge=1)


class CommandBody(_Body):
    resume: Any = None
    update: Any = None
    goto: Any = None


class CancelMany(_Body):
    thread_id: str | None = None
    run_ids: list[str] | None = None
    status: Literal["pending", "running", "all"] | None = None

    def model_post_init(self, context: Any) -> None:
        if self.status == "all":
            self.status = None


class RunCreate(_Body):
    assistant_id: str = Field(..., min_length=1, max_length=128)
    input: dict[str, Any] | list[Any] | None = None
    command: CommandBody | None = None
    config: dict[str, Any] = {}
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] = {}
    stream_mode: StreamMode | list[StreamMode] = "values"
    interrupt_before: list[str] | Literal["*"] | None = None
    interrupt_after: list[str] | Literal["*"] | None = None
    checkpoint_id: str | None = None
    checkpoint: dict[str, Any] | None = None
    durability: Literal["sync", "async", "exit"] | None = None
    checkpoint_during: bool | None = None
    stream_subgraphs: bool = False
    # Every streamed run's events are kept (any process replays them after Last-Event-ID).
    stream_resumable: bool = False
    on_disconnect: Literal["cancel", "continue"] = "continue"
    on_completion: Literal["delete", "keep"] | None = None  # stateless runs keep no thread anyway
    multitask_strategy: Literal["reject", "enqueue", "interrupt", "rollback"] = "enqueue"
    if_not_exists: Literal["create", "reject"] = "reject"
    # A resume that answers no interrupt waiting on the thread fails the run (UnknownInterruptError)
    # instead of being ignored; the thread stays as it was.
    strict_resume: bool = False
    # A delayed run: pending until this many seconds after it was created (at most a week), then
    # run by whichever process claims it first.
    after_seconds: float | None = Field(None, ge=0, le=7 * 24 * 3600)
    # Called when the run ends (surfaces/webhooks.py), if the URL policy admits it.
    webhook: str | None = Field(None, min_length=1, max_length=65_536)

    def checkpoint_ref(self) -> str | None:
        return self.checkpoint_id or (self.checkpoint or {}).get("checkpoint_id")


# --- crons: a schedule, and the run each of its ticks creates ---------------------------------
CRON_FIELDS = ("cron_id", "assistant_id", "thread_id", "end_time", "schedule", "timezone",
               "created_at", "updated_at", "user_id", "payload", "next_run_date", "metadata",
               "on_run_completed", "enabled")


def _schedule(value: str | None) -> str | None:
    from croniter import croniter

    if value is not None and not croniter.is_valid(value):
        raise ValueError(f"invalid cron schedule {value!r}: five fields (minute hour day-of-month "
                         "month day-of-week), optionally a sixth for seconds, e.g. '*/5 * * * *'")
    return value


def _timezone(value: str | None) -> str | None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if value is not None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}: an IANA name, e.g. 'Europe/Paris'") from None
    return value


class CronRun(_Body):
    """The run each tick of a cron creates (the fields of a run the schedule can carry)."""
    input: dict[str, Any] | list[Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    stream_mode: StreamMode | list[StreamMode] | None = None
    stream_subgraphs: bool | None = None
    stream_resumable: bool | None = None
    interrupt_before: list[str] | Literal["*"] | None = None
    interrupt_after: list[str] | Literal["*"] | None = None
    durability: Literal["sync", "async", "exit"] | None = None
    checkpoint_during: bool | None = None
    multitask_strategy: Literal["reject", "enqueue", "interrupt", "rollback"] | None = None
    webhook: str | None = Field(None, min_length=1, max_length=65_536)


class CronCreate(CronRun):
    assistant_id: str = Field(..., min_length=1, max_length=128)
    schedule: str = Field(..., max_length=256)
    timezone: str | None = Field(None, max_length=64)
    end_time: datetime | None = None
    enabled: bool = True
    # a cron without a thread: `delete` (each run stateless, nothing kept) or `keep` (each run on a
    # new thread that is kept)
    on_run_completed: Literal["delete", "keep"] | None = None

    _valid_schedule = field_validator("schedule")(_schedule)
    _valid_timezone = field_validator("timezone")(_timezone)


class CronUpdate(CronRun):
    schedule: str | None = Field(None, max_length=256)
    timezone: str | None = Field(None, max_length=64)
    end_time: datetime | None = None  # sent as null: the end time is cleared
    enabled: bool | None = None
    on_run_completed: Literal["delete", "keep"] | None = None

    _valid_schedule = field_validator("schedule")(_schedule)
    _valid_timezone = field_validator("timezone")(_timezone)


class CronCount(_Body):
    assistant_id: str | None = Field(None, max_length=128)
    thread_id: str | None = Field(None, max_length=128)
    metadata: dict[str, Any] = {}


class CronSearch(CronCount):
    enabled: bool | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    sort_by: Literal["cron_id", "assistant_id", "thread_id", "created_at", "updated_at",
                     "next_run_date", "end_time"] = "created_at"
    sort_order: Literal["asc", "desc"] = "desc"
    select: list[Literal[CRON_FIELDS]] | None = None  # type: ignore[valid-type]


# --- the store (namespaces are lists of labels: non-empty, without periods, as the Platform's) ---
Label = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^.]+$")]
Namespace = Annotated[list[Label], Field(max_length=32)]


class StorePut(_Body):
    namespace: Annotated[list[Label], Field(min_length=1, max_length=32)]
    key: str = Field(min_length=1, max_length=1024)
    value: dict[str, Any]
    index: Literal[False] | list[str] | None = None  # fields to embed (False: none)
    ttl: float | None = Field(None, gt=0, le=MAX_TTL_MINUTES)  # minutes


class StoreDelete(_Body):
    namespace: Annotated[list[Label], Field(min_length=1, max_length=32)]
    key: str = Field(min_length=1, max_length=1024)


class StoreSearch(_Body):
    namespace_prefix: Namespace = []
    filter: dict[str, Any] | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    query: str | None = Field(None, max_length=10_000)  # semantic search (the store's index)
    refresh_ttl: bool | None = None


class StoreNamespaces(_Body):
    prefix: Namespace | None = None
    suffix: Namespace | None = None
    max_depth: int | None = Field(None, ge=1, le=32)
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
