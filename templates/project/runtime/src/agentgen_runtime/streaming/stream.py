"""What a streamed run sends: LangGraph's stream translated into the LangGraph Platform's events,
as `langgraph-api` names and shapes them (so the SDKs and Studio read them alike).

- Every mode a client may ask for: `values`, `updates`, `custom`, `tasks`, `checkpoints`, `debug`
  (its checkpoints carry `checkpoint`/`parent_checkpoint` as the Platform adds them), `messages`
  (`messages/metadata`, then `messages/partial` with the message so far, or `messages/complete`
  for a message a node returned whole), `messages-tuple` (`messages` with `[message, metadata]`)
  and `events` (LangChain's `astream_events` v2: every callback event of the run).
- With `stream_subgraphs`, a subgraph's events are named `<mode>|<namespace>`; its tokens come as
  `messages|<namespace>` for `messages-tuple` and, for `messages`, in the same
  `messages/partial` events as the root's (as the Platform sends them).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from enum import Enum
from typing import Any, get_args

from langchain_core.messages import BaseMessageChunk
from pydantic import BaseModel

from ..models import RunCreate, StreamMode

Emit = Callable[[str, Any], None]


def jsonable(value: Any) -> Any:
    """What the LangGraph API sends for state values: messages and models as dicts, interrupts as
    {value, id}, tuples as lists."""
    if isinstance(value, Mapping):  # (a dict, custom auth's user)
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, BaseModel):
        return jsonable(value.model_dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def requested_modes(body: RunCreate) -> list[str]:
    return [body.stream_mode] if isinstance(body.stream_mode, str) else list(body.stream_mode)


def graph_modes(requested: list[str]) -> list[str]:
    """The modes LangGraph is asked for: the requested ones (`messages-tuple` is LangGraph's
    `messages`, `events` is not a mode but a different call) and `values`, the run's output."""
    modes = {"messages" if m == "messages-tuple" else m for m in requested if m != "events"}
    return sorted(modes | {"values"})


def _checkpoint_ref(config: Any) -> dict[str, Any] | None:
    configurable = (config or {}).get("configurable") or {}
    if not configurable.get("thread_id") or not configurable.get("checkpoint_id"):
        return None
    ref = {"checkpoint_id": configurable["checkpoint_id"], "thread_id": configurable["thread_id"]}
    if "checkpoint_ns" in configurable:
        ref["checkpoint_ns"] = configurable["checkpoint_ns"] or ""
    if "checkpoint_map" in configurable:
        ref["checkpoint_map"] = configurable["checkpoint_map"]
    return ref


def _debug(chunk: Any) -> Any:
    """A `debug` checkpoint as the Platform sends it: with `checkpoint`, `parent_checkpoint`, and
    each task's state config as its `checkpoint`."""
    if not isinstance(chunk, dict) or chunk.get("type") != "checkpoint" or not chunk.get("payload"):
        return chunk
    payload = dict(chunk["payload"])
    payload["checkpoint"] = _checkpoint_ref(payload.get("config"))
    payload["parent_checkpoint"] = _checkpoint_ref(payload.get("parent_config"))
    tasks = []
    for task in payload.get("tasks") or []:
        task = dict(task)
        state = task.get("state")
        if isinstance(state, dict) and state.get("configurable"):
            task["checkpoint"] = state["configurable"]
            del task["state"]
        tasks.append(task)
    payload["tasks"] = tasks
    return {**chunk, "payload": payload}


class Translator:
    """Turns one run's LangGraph stream items into Platform events (`emit(name, data)`), and keeps
    the root graph's last values (the run's output)."""

    def __init__(self, requested: list[str], emit: Emit) -> None:
        self.requested = set(requested)
        self.emit = emit
        self.messages: dict[str, Any] = {}
        self.values: Any = None

    def item(self, namespace: tuple[str, ...], mode: str, chunk: Any) -> None:
        suffix = f"|{'|'.join(namespace)}" if namespace else ""
        if mode == "values" and not namespace:
            self.values = jsonable(chunk)
        if mode == "debug":
            chunk = _debug(chunk)
        if mode == "messages":
            message, metadata = chunk
            if "messages-tuple" in self.requested:
                self.emit(f"messages{suffix}", [jsonable(message), jsonable(metadata)])
            elif "messages" in self.requested:
                self._message(message, metadata)
            return
        if mode in self.requested:
            self.emit(f"{mode}{suffix}", jsonable(chunk))

    def _message(self, message: Any, metadata: Any) -> None:
        key = getattr(message, "id", None) or "message"
        if key in self.messages:
            self.messages[key] = self.messages[key] + message
        else:
            self.messages[key] = message
            self.emit("messages/metadata", {key: {"metadata": jsonable(metadata)}})
        whole = self.messages[key]
        if isinstance(message, BaseMessageChunk):
            self.emit("messages/partial", [jsonable(whole)])
        else:
            self.emit("messages/complete", [jsonable(whole)])


async def stream_run(graph: Any, run_input: Any, config: dict[str, Any], options: dict[str, Any],
                     body: RunCreate, emit: Emit) -> Any:
    """Run the graph, emitting the events the client asked for; the run's final values."""
    requested = requested_modes(body)
    translator = Translator(requested, emit)
    subgraphs = body.stream_subgraphs
    modes = graph_modes(requested)
    if "events" in requested:
        # every callback event; the root run's own stream chunks carry the modes
        root = str(config.get("run_id"))
        async for event in graph.astream_events(run_input, config, version="v2",
                                                stream_mode=modes, subgraphs=subgraphs,
                                                **options):
            if "langsmith:hidden" in (event.get("tags") or ()):
                continue
            if event.get("event") == "on_chain_stream" and str(event.get("run_id")) == root:
                chunk = event["data"]["chunk"]
                translator.item(*(chunk if subgraphs else ((), *chunk)))
            else:
                emit("events", jsonable(event))
        return translator.values
    stream: AsyncIterator[Any] = graph.astream(run_input, config, stream_mode=modes,
                                               subgraphs=subgraphs, **options)
    async for item in stream:
        translator.item(*(item if subgraphs else ((), *item)))
    return translator.values


# --- the thread stream (`GET /threads/{id}/stream`) ---------------------------------------------
THREAD_MODES = ("run_modes", "lifecycle", "state_update")
RUN_MODES: tuple[str, ...] = get_args(StreamMode)
RUN_DONE = 2**31 - 1  # the event number of a run's `run_done` (after any event it records)
KEEPALIVE_SECONDS = 10.0
POLL_SECONDS = 0.25  # how soon a run created on the thread is followed


def parse_modes(values: list[str | None], allowed: tuple[str, ...]) -> set[str]:
    """The modes named by a stream's query parameters: repeated (`?stream_mode=a&stream_mode=b`,
    as the Python SDK sends a list), a JSON array (as langgraph-api reads one) or comma-separated.
    Raises ValueError naming a mode that is not one of `allowed`."""
    modes: set[str] = set()
    for value in values:
        value = (value or "").strip()
        if value.startswith("["):
            try:
                items = json.loads(value)
            except ValueError:
                items = None
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ValueError(f"stream_mode: {value!r} is not a JSON array of modes")
        else:
            items = value.split(",")
        modes.update(item.strip() for item in items if item.strip())
    for mode in sorted(modes - set(allowed)):
        raise ValueError(f"stream_mode: {mode!r} is not one of {', '.join(allowed)}")
    return modes


def run_event_wanted(modes: set[str], event: str) -> bool:
    """Whether joining a run's stream with `modes` sends this event (as langgraph-api filters:
    a subgraph's `<mode>|<ns>` by its mode, every `messages/...` for either messages mode). A
    run's `error` is always sent (langgraph-api drops it when it is not named): a client must
    learn how its run ended."""
    if not modes or event == "error":
        return True
    base = event.partition("|")[0]
    return base in modes or (base.startswith("messages")
                             and not modes.isdisjoint(("messages", "messages-tuple")))


def thread_event_wanted(modes: set[str], event: str, data: Any) -> bool:
    """Whether a thread stream asking for `modes` sends this event (as the Platform filters)."""
    if event == "state_update":
        return "state_update" in modes
    if "run_modes" in modes:
        return True
    return ("lifecycle" in modes and event == "metadata" and isinstance(data, dict)
            and (data.get("status") == "run_done" or {"run_id", "attempt"} <= data.keys()))


def parse_thread_event_id(value: str | None) -> tuple[int, int] | None:
    """A thread stream's event id, `<run number>-<event number>`, or None."""
    head, _, tail = (value or "").partition("-")
    return (int(head), int(tail)) if head.isdigit() and tail.isdigit() else None
