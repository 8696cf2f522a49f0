"""What clients send: the request bodies, validated at the edge (unknown fields, NUL characters,
non-finite numbers and over-deep values are a 422 naming the field, before anything is written)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

StreamMode = Literal["values", "updates", "messages", "messages-tuple", "custom", "events", "debug",
                     "tasks", "checkpoints"]


# What a client may send in any JSON value: PostgreSQL cannot store NUL in text or jsonb, nor
# NaN/Infinity in jsonb, and a deeply nested value would fail whoever reads it back.
MAX_JSON_DEPTH = 32
MAX_OFFSET = 2**31 - 1


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


class ThreadCreate(_Body):
    thread_id: str | None = Field(None, max_length=128)
    metadata: dict[str, Any] = {}
    if_exists: Literal["raise", "do_nothing"] = "raise"


class ThreadSearch(_Body):
    metadata: dict[str, Any] = {}
    ids: list[str] | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    sort_by: Literal["thread_id", "created_at", "updated_at"] = "created_at"
    sort_order: Literal["asc", "desc"] = "desc"


class ThreadUpdate(_Body):
    metadata: dict[str, Any] = {}


class ThreadCount(_Body):
    metadata: dict[str, Any] = {}


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

    def checkpoint_ref(self) -> str | None:
        return self.checkpoint_id or (self.checkpoint or {}).get("checkpoint_id")
