"""The thread-centric streaming protocol (langgraph-sdk 0.4's `client.threads.stream(...)`, the
"v3" session; the Platform's "protocol v2"): commands on `POST /threads/{id}/commands` and event
streams on `POST /threads/{id}/stream/events`, or both on a WebSocket at that path (SocketSession),
as `langgraph-api` shapes them.

- A run started by `run.start` carries the `__event_streaming_v2` mark in its configurable (as on
  the Platform). The worker runs it with LangGraph's own protocol stream
  (`astream_events(version="v3")`: values, content-block messages, subgraph lifecycle) and records
  each event like any streamed run's (`<method>|<namespace>`), so any process can serve it.
- A stream replays the thread's protocol runs from the first, then follows new ones, enveloping
  each event with the connection's `seq` (contiguous, so a reconnecting client's `since` means the
  same on every connection and replica) and a stable `event_id` (the client deduplicates by it).
  The session adds what the Platform adds: the root's lifecycle (`running`, then `completed`,
  `interrupted` or `failed`), `input.requested` for each interrupt, `completed` for subgraphs left
  open, messages mirroring finished tools; state payloads are normalized to protocol messages.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from .stream import jsonable

MARK = "__event_streaming_v2"  # the configurable key that makes a run a protocol run
CHANNELS = frozenset({"values", "updates", "checkpoints", "messages", "tools", "custom",
                      "lifecycle", "input", "tasks"})
CHANNELS_HINT = ("values, updates, messages, tools, custom, lifecycle, input, tasks, or any "
                 "`custom:<name>`")
MULTITASK = ("reject", "enqueue", "interrupt", "rollback")

Emit = Callable[[str, Any], None]


def is_protocol_run(kwargs: dict[str, Any] | None) -> bool:
    configurable = ((kwargs or {}).get("config") or {}).get("configurable") or {}
    return bool(configurable.get(MARK))


def channel_ok(value: Any) -> bool:
    return isinstance(value, str) and (value in CHANNELS or (value.startswith("custom:")
                                                             and len(value) > len("custom:")))


# --- running a protocol run (the worker) ----------------------------------------------------------
async def run_protocol(graph: Any, run_input: Any, config: dict[str, Any], options: dict[str, Any],
                       emit: Emit) -> Any:
    """Run the graph on LangGraph's protocol stream, recording each event; the root's last values
    (the run's output, with the interrupts it stopped at as `__interrupt__`, as a run's output has
    on every other stream)."""
    output: Any = None
    run = await graph.astream_events(run_input, config, version="v3", **options)
    async with run:
        async for event in run:
            method = event.get("method")
            params = event.get("params") or {}
            if not isinstance(method, str):
                continue
            namespace = [str(part) for part in params.get("namespace") or []]
            data = params.get("data")
            if method == "messages" and isinstance(data, list | tuple) and data:
                data = data[0]  # (content-block event, metadata): the protocol sends the event
            recorded = {"data": jsonable(data)}
            for key in ("interrupts", "node", "timestamp"):
                if params.get(key) is not None:
                    recorded[key] = jsonable(params[key])
            if method == "values" and not namespace:
                output = recorded["data"]
                if recorded.get("interrupts") and isinstance(output, dict):
                    output = {**output, "__interrupt__": recorded["interrupts"]}
            emit("|".join([method, *namespace]), recorded)
    return output


# --- subscriptions ------------------------------------------------------------------------------
@dataclass
class Subscription:
    channels: set[str]
    namespaces: list[list[str]] | None = None
    depth: int | None = None
    since: int | None = None

    @classmethod
    def parse(cls, body: Any) -> Subscription:
        """An event stream's filter (`EventStreamRequest`); ValueError naming what is wrong."""
        channels = body.get("channels") if isinstance(body, dict) else None
        if not isinstance(channels, list) or not channels:
            raise ValueError("channels is required and must be a non-empty array")
        bad = [c if isinstance(c, str) else repr(c) for c in channels if not channel_ok(c)]
        if bad:
            raise ValueError(f"channels contains unsupported entries: {', '.join(bad[:5])}. "
                             f"Allowed: {CHANNELS_HINT}.")
        given = body.get("namespaces")
        namespaces = [ns for ns in given if isinstance(ns, list)
                      and all(isinstance(s, str) for s in ns)] if isinstance(given, list) else []
        depth, since = body.get("depth"), body.get("since")
        return cls(set(channels), namespaces or None,
                   depth if _count(depth) else None, since if _count(since) else None)

    def matches(self, event: dict[str, Any]) -> bool:
        method = event["method"]
        channel = "input" if method == "input.requested" else method
        if channel == "custom":
            name = (event["params"].get("data") or {}).get("name") \
                if isinstance(event["params"].get("data"), dict) else None
            if "custom" not in self.channels and f"custom:{name}" not in self.channels:
                return False
        elif channel not in self.channels:
            return False
        if not self.namespaces:
            return True
        ns = event["params"]["namespace"]
        return any(ns[:len(prefix)] == prefix
                   and (self.depth is None or len(ns) - len(prefix) <= self.depth)
                   for prefix in self.namespaces)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# --- protocol state payloads --------------------------------------------------------------------
_BLOCKS = frozenset({"text", "reasoning", "image", "audio", "video", "file", "tool_call",
                     "tool_call_chunk", "invalid_tool_call", "server_tool_call",
                     "server_tool_call_chunk", "server_tool_result", "non_standard"})
_MESSAGE_TYPES = {"ai": "ai", "assistant": "ai", "human": "human", "user": "human",
                  "system": "system", "tool": "tool"}


def _block(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        return {"type": "text", "text": value}
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return None
    if value["type"] in _BLOCKS:
        return value
    if value["type"] == "image_url":
        image = value.get("image_url")
        url = image if isinstance(image, str) else (image or {}).get("url")
        return {"type": "image", "url": url} if isinstance(url, str) else None
    return {"type": "non_standard", "value": dict(value)}


def _tool_calls(calls: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    valid, invalid = [], []
    for call in calls if isinstance(calls, list) else []:
        if not isinstance(call, dict):
            continue
        name, args = call.get("name"), call.get("args")
        entry: dict[str, Any] = {"id": call["id"]} if isinstance(call.get("id"), str) else {}
        if isinstance(name, str) and isinstance(args, dict):
            valid.append({"type": "tool_call", "name": name, "args": args, **entry})
        else:
            invalid.append({"type": "invalid_tool_call", **({"name": name} if name else {}),
                            **entry, "error": "Incomplete tool call." if not name
                            else "Malformed args."})
    return valid, invalid


def _message(value: dict[str, Any]) -> dict[str, Any]:
    """A state message as the protocol sends it: its type, content as blocks, and only the fields
    that say something."""
    kind = _MESSAGE_TYPES[value["type"]]
    content = value.get("content", "")
    if isinstance(content, list):
        content = [b for b in (_block(entry) for entry in content) if b is not None] or content
    message: dict[str, Any] = {"type": kind, "content": content}
    for key in ("id", "name"):
        if isinstance(value.get(key), str):
            message[key] = value[key]
    if kind in ("ai", "human") and isinstance(value.get("example"), bool):
        message["example"] = value["example"]
    if isinstance(value.get("response_metadata"), dict) and value["response_metadata"]:
        message["response_metadata"] = value["response_metadata"]
    if kind == "tool":
        for key in ("tool_call_id", "artifact"):
            if key in value and value[key] is not None:
                message[key] = value[key]
        if value.get("status") in ("success", "error"):
            message["status"] = value["status"]
    if kind == "ai":
        valid, invalid = _tool_calls(value.get("tool_calls"))
        invalid += [{"type": "invalid_tool_call", "error": "Malformed args.",
                     **{k: c[k] for k in ("id", "name", "args") if isinstance(c.get(k), str)}}
                    for c in value.get("invalid_tool_calls") or [] if isinstance(c, dict)]
        if valid:
            message["tool_calls"] = valid
        if invalid:
            message["invalid_tool_calls"] = invalid
    return message


def state_payload(value: Any) -> Any:
    """A `values`/`updates` payload as the protocol sends it: messages normalized, interrupts
    (sent on the `input` channel) left out."""
    if isinstance(value, list):
        return [_message(v) if _is_message(v) else state_payload(v) for v in value]
    if not isinstance(value, dict):
        return value
    return {k: ([_message(m) if _is_message(m) else m for m in v]
                if k == "messages" and isinstance(v, list) else state_payload(v))
            for k, v in value.items() if k != "__interrupt__"}


def _is_message(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") in _MESSAGE_TYPES


def _interrupt_requests(interrupts: Any) -> list[dict[str, Any]]:
    requests = []
    for entry in interrupts if isinstance(interrupts, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            requests.append({"interrupt_id": entry["id"],
                             **({"payload": entry["value"]} if "value" in entry else {})})
    return requests


# --- one run's events, as the session sends them ------------------------------------------------
@dataclass
class _Namespace:
    status: str
    graph_name: str | None


@dataclass
class RunView:
    """Turns one protocol run's recorded events into protocol events (without `seq`): what the
    Platform's session adds around LangGraph's own stream."""

    run_id: str
    graph_name: str
    namespaces: dict[tuple[str, ...], _Namespace] = field(default_factory=dict)
    started_sent: set[tuple[str, ...]] = field(default_factory=set)
    interrupts: dict[str, list[str]] = field(default_factory=dict)
    checkpoints: set[str] = field(default_factory=set)
    terminal: bool = False

    def begin(self) -> list[dict[str, Any]]:
        return self._lifecycle([], "running")

    def event(self, event_id: str, name: str, recorded: Any) -> list[dict[str, Any]]:
        """The protocol events of one recorded event (`<method>|<namespace>`), the first with the
        recorded event's id, the others with it and their rank (`<id>.<n>`), unless synthetic."""
        out = self._events(name, recorded)
        for n, item in enumerate(out):
            item.setdefault("event_id", event_id if n == 0 else f"{event_id}.{n}")
        return out

    def _events(self, name: str, recorded: Any) -> list[dict[str, Any]]:
        method, *namespace = name.split("|")
        if method == "metadata":
            return []
        if method == "error":
            self.terminal = True
            message = recorded.get("message") if isinstance(recorded, dict) else str(recorded)
            return self._stale([]) + self._lifecycle([], "failed", error=str(message))
        if not isinstance(recorded, dict):
            return []
        data = recorded.get("data")
        out: list[dict[str, Any]] = []
        if method == "lifecycle":
            return self._child_lifecycle(namespace, data)
        if method != "messages":
            self._register(namespace)
        node = recorded.get("node")
        if method == "values":
            out += self._inputs(namespace, _interrupt_requests(recorded.get("interrupts"))
                                + _interrupt_requests((data or {}).get("__interrupt__")
                                                      if isinstance(data, dict) else None))
            if not isinstance(data, dict) or data:
                out.append(_event("values", namespace, state_payload(data), recorded))
        elif method == "updates":
            if node == "__interrupt__" or (isinstance(data, dict) and "__interrupt__" in data):
                return self._inputs(namespace, _interrupt_requests(
                    data.get("__interrupt__") if isinstance(data, dict) else data))
            out.append(_event("updates", namespace, state_payload(data), recorded, node))
            if isinstance(node, str):
                out += self._child_done(namespace, node)
        elif method == "checkpoints":
            if not isinstance(data, dict) or not isinstance(data.get("id"), str) \
                    or data["id"] in self.checkpoints:
                return []
            self.checkpoints.add(data["id"])
            out.append(_event("checkpoints", namespace, data, recorded))
        elif method.startswith("custom:"):
            out.append(_event("custom", namespace, {"name": method[len("custom:"):],
                                                   "payload": data}, recorded))
        elif method == "tools":
            if isinstance(data, dict) and isinstance(data.get("__node"), str):
                node = data.pop("__node")
            out.append(_event("tools", namespace, data, recorded, node))
            out += _tool_message(namespace, data)
        else:  # messages (content-block events), custom, tasks
            out.append(_event(method, namespace, data, recorded, node))
        return out

    def end(self, status: str, error: str | None) -> list[dict[str, Any]]:
        """The run's terminal lifecycle (its row's status), unless an interrupt or error sent it."""
        if self.terminal:
            return []
        self.terminal = True
        state = {"success": "completed", "error": "failed", "timeout": "failed",
                 "interrupted": "interrupted"}.get(status, "completed")
        return self._stale([]) + self._lifecycle([], state, error=error if state == "failed"
                                                 else None)

    # the session's bookkeeping of subgraph namespaces, as langgraph-api keeps it
    def _register(self, namespace: list[str]) -> None:
        for n in range(1, len(namespace) + 1):
            key = tuple(namespace[:n])
            info = self.namespaces.get(key)
            if info is None or info.status != "started":
                self.namespaces[key] = _Namespace("started", info.graph_name if info
                                                  else _guess(key))

    def _child_lifecycle(self, namespace: list[str], data: Any) -> list[dict[str, Any]]:
        if not isinstance(data, dict) or not isinstance(data.get("event"), str):
            return []
        inner = data.get("namespace")
        if isinstance(inner, list) and len(inner) > len(namespace):
            namespace = [str(s) for s in inner]
        if not namespace:
            return []  # the root's lifecycle is the session's
        key = tuple(namespace)
        if data["event"] == "started":
            if key in self.started_sent:
                return []
            self.started_sent.add(key)
            self.namespaces[key] = _Namespace("started", data.get("graph_name")
                                              if isinstance(data.get("graph_name"), str) else _guess(key))
            return [_event("lifecycle", namespace, data, {})]
        if data["event"] in ("running", "completed", "failed", "interrupted"):
            return self._lifecycle(namespace, data["event"], data.get("graph_name"),
                                   data.get("error") if isinstance(data.get("error"), str) else None)
        return []

    def _child_done(self, parent: list[str], node: str) -> list[dict[str, Any]]:
        if not node or node.startswith("__"):
            return []
        for key, info in self.namespaces.items():
            if len(key) == len(parent) + 1 and info.status == "started" \
                    and list(key[:-1]) == parent and (key[-1] == node
                                                      or key[-1].startswith(f"{node}:")):
                return self._lifecycle(list(key), "completed", info.graph_name)
        return []

    def _stale(self, current: list[str]) -> list[dict[str, Any]]:
        """`completed` for every open subgraph namespace `current` is not inside, deepest first."""
        open_ = [k for k, info in self.namespaces.items()
                 if info.status == "started" and k and list(current[:len(k)]) != list(k)]
        out: list[dict[str, Any]] = []
        for key in sorted(open_, key=len, reverse=True):
            out += self._lifecycle(list(key), "completed")
        return out

    def _lifecycle(self, namespace: list[str], status: str, graph_name: str | None = None,
                   error: str | None = None) -> list[dict[str, Any]]:
        key = tuple(namespace)
        info = self.namespaces.get(key)
        name = graph_name or (info.graph_name if info else None) \
            or (self.graph_name if not namespace else _guess(key))
        if info is not None and info.status == status and info.graph_name == name and not error:
            return []
        self.namespaces[key] = _Namespace(status, name)
        data = {"event": status, "graph_name": name, **({"error": error} if error else {})}
        return [{**_event("lifecycle", namespace, data, {}),
                 "event_id": f"synth:{self.run_id}:lc|{'|'.join(namespace)}|{status}"}]

    def _inputs(self, namespace: list[str], requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for request in requests:
            if request["interrupt_id"] in self.interrupts:
                continue
            self.interrupts[request["interrupt_id"]] = namespace
            out.append({**_event("input.requested", namespace, request, {}),
                        "event_id": f"synth:{self.run_id}:input|{'|'.join(namespace)}|"
                                    f"{request['interrupt_id']}"})
        if out:  # the run stopped for an answer: the root is interrupted now
            out += self._lifecycle([], "interrupted")
            self.terminal = True
        return out


def _guess(key: tuple[str, ...]) -> str:
    return key[-1].partition(":")[0] if key else ""


def _event(method: str, namespace: list[str], data: Any, recorded: dict[str, Any],
           node: Any = None) -> dict[str, Any]:
    timestamp = recorded.get("timestamp")
    params: dict[str, Any] = {"namespace": list(namespace),
                              "timestamp": timestamp if isinstance(timestamp, int)
                              else int(time.time() * 1000), "data": data}
    if isinstance(node, str) and node:
        params["node"] = node
    return {"type": "event", "method": method, "params": params}


def _tool_message(namespace: list[str], data: Any) -> list[dict[str, Any]]:
    """A finished tool's output mirrored on `messages` as a `tool` message (as the Platform does),
    under the tool call's own namespace."""
    if not isinstance(data, dict) or data.get("event") != "tool-finished" \
            or not isinstance(data.get("output"), dict):
        return []
    output = data["output"]
    call_id = data.get("tool_call_id") if isinstance(data.get("tool_call_id"), str) \
        else output.get("tool_call_id") if isinstance(output.get("tool_call_id"), str) else None
    message_id = output.get("id") if isinstance(output.get("id"), str) and output["id"] \
        else f"tool-{call_id}" if call_id else None
    if message_id is None:
        return []
    content = output.get("content")
    text = content if isinstance(content, str) else _text(content)
    where = [*namespace, f"tools:{call_id}"] if call_id else namespace
    block = {"type": "text", "text": text}
    start = {"event": "message-start", "role": "tool", "id": message_id,
             **({"tool_call_id": call_id} if call_id else {})}
    return [_event("messages", where, item, {}) for item in (
        start, {"event": "content-block-start", "index": 0, "content": {"type": "text", "text": ""}},
        {"event": "content-block-delta", "index": 0, "content": block},
        {"event": "content-block-finish", "index": 0, "content": block},
        {"event": "message-finish", "metadata": {}})]


def _text(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(value)


# --- a connection's stream ----------------------------------------------------------------------
class Numbering:
    """A connection's view of a thread's protocol events: the followed events of its protocol runs
    turned into protocol events and numbered `seq` 1, 2, ... (the same numbers on every connection:
    each replays the thread's protocol runs from the first); `current` is the run being followed."""

    def __init__(self, run_of: Callable[[str], Any]) -> None:
        self.run_of = run_of  # run id -> its row (awaitable), or None
        self.seq = 0
        self.views: dict[str, RunView | None] = {}
        self.current: RunView | None = None
        self.last: RunView | None = None  # the protocol run followed last (agent.getTree's)

    async def events(self, runs: AsyncIterator[tuple[str | None, str, Any]],
                     ) -> AsyncIterator[dict[str, Any] | None]:
        """The numbered protocol events of `follow_thread`'s items (id, event, data); keepalives
        pass through as None."""
        async for event_id, event, data in runs:
            if not event:
                yield None
                continue
            for item in await self._produce(event_id, event, data):
                self.seq += 1
                yield {"type": item["type"], "event_id": item["event_id"], "seq": self.seq,
                       "method": item["method"], "params": item["params"]}

    async def _produce(self, event_id: str | None, event: str, data: Any) -> list[dict[str, Any]]:
        if event == "metadata" and isinstance(data, dict) and data.get("status") == "run_done":
            view = self.views.get(str(data.get("run_id")))
            row = await self.run_of(view.run_id) if view is not None else None
            self.current = None
            # (a run rolled back is gone: it has no outcome to tell, as on the Platform)
            return view.end(row["status"], row.get("error")) if view is not None and row else []
        if event == "metadata" and isinstance(data, dict) and "run_id" in data:
            run_id = str(data["run_id"])
            if run_id in self.views:
                self.current = self.views[run_id]
                return []
            row = await self.run_of(run_id)
            self.current = self.views[run_id] = RunView(run_id, row["graph_id"]) \
                if row is not None and is_protocol_run(row.get("kwargs")) else None
            if self.current is None:
                return []
            self.last = self.current
            return self.current.begin()
        if self.current is not None:
            return self.current.event(str(event_id), event, data)
        return []

    def tree(self) -> dict[str, Any] | None:
        """`agent.getTree`'s answer for the protocol run followed last (None before any): its
        namespaces nested, each with its status and graph name."""
        view = self.last
        if view is None:
            return None

        def node(key: tuple[str, ...]) -> dict[str, Any]:
            info = view.namespaces.get(key) or _Namespace(
                "started", view.graph_name if not key else _guess(key))
            children = sorted(k for k in view.namespaces if len(k) == len(key) + 1
                              and k[:len(key)] == key)
            return {"namespace": list(key), "status": info.status, "graph_name": info.graph_name,
                    **({"children": [node(k) for k in children]} if children else {})}

        return node(())


async def envelopes(runs: AsyncIterator[tuple[str | None, str, Any]],
                    run_of: Callable[[str], Any], subscription: Subscription,
                    ) -> AsyncIterator[dict[str, Any] | None]:
    """The protocol events of a thread's followed events (`follow_thread`'s items: id, event,
    data; keepalives as None), numbered for this connection and filtered by `subscription`.
    `run_of(run_id)` gives the run's row (awaitable), or None."""
    async for item in Numbering(run_of).events(runs):
        if item is None or ((subscription.since is None or item["seq"] > subscription.since)
                            and subscription.matches(item)):
            yield item


class Refused(Exception):
    """A command the protocol answers with an error envelope (`code`: the protocol's error code)."""

    def __init__(self, code: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.code, self.fields = code, fields


def subscription_of(method: str, params: dict[str, Any]) -> Subscription:
    """The filter of a `subscription.subscribe` or `subscription.reconnect` command (the latter
    with its `since`), refused with langgraph-api's codes and messages."""
    channels = params.get("channels")
    if not isinstance(channels, list) or not channels:
        raise Refused("invalid_argument", f"{method} requires a non-empty channels array.")
    since = params.get("since")
    if method == "subscription.reconnect" and not _count(since):
        raise Refused("invalid_argument", f"{method} requires a non-negative integer since.")
    try:
        return Subscription.parse({**params, "since": since if method ==
                                   "subscription.reconnect" else None})
    except ValueError:
        raise Refused("invalid_argument", f"{method} received an unsupported channel.") from None


class SocketSession:
    """The subscriptions of one full-duplex connection (the protocol's WebSocket transport): every
    event of the thread is numbered (Numbering), and the current run's are kept (its last BUFFER,
    as langgraph-api keeps them); an event is sent once when any subscription takes it;
    `subscription.subscribe` replays the kept events its filter takes, `subscription.reconnect`
    those after its `since` (`resume_gap` when they are no longer kept), `subscription.unsubscribe`
    ends one."""

    BUFFER = 10_000
    MAX_SUBSCRIPTIONS = 64  # per connection: each one is matched against every event

    def __init__(self, numbering: Numbering, send: Callable[[dict[str, Any]], Any]) -> None:
        self.numbering, self.send = numbering, send
        self.subscriptions: dict[str, Subscription] = {}
        self.kept: deque[dict[str, Any]] = deque(maxlen=self.BUFFER)
        self._lock = asyncio.Lock()  # a replay and the live events reach the client in seq order
        self._run: RunView | None = None

    async def deliver(self, event: dict[str, Any]) -> None:
        async with self._lock:
            if self.numbering.last is not self._run:  # a new run: its events are kept
                self._run = self.numbering.last
                self.kept.clear()
            self.kept.append(event)
            if any(sub.matches(event) for sub in self.subscriptions.values()):
                await self.send(event)

    async def command(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The result of a subscription command or `agent.getTree`; raises Refused."""
        if method == "agent.getTree":
            tree = self.numbering.tree()
            if tree is None:
                raise Refused("no_such_run", "No active run is bound to this thread.")
            return {"tree": tree}
        if method == "subscription.unsubscribe":
            sub_id = params.get("subscription_id")
            if not isinstance(sub_id, str):
                raise Refused("invalid_argument",
                              "subscription.unsubscribe requires a subscription_id.")
            if self.subscriptions.pop(sub_id, None) is None:
                raise Refused("no_such_subscription", f"Unknown subscription: {sub_id}")
            return {}
        subscription = subscription_of(method, params)
        given = params.get("subscription_id") if method == "subscription.reconnect" else None
        sub_id = given if isinstance(given, str) and given else str(uuid.uuid4())
        if sub_id not in self.subscriptions and len(self.subscriptions) >= self.MAX_SUBSCRIPTIONS:
            raise Refused("invalid_argument", f"at most {self.MAX_SUBSCRIPTIONS} subscriptions per "
                                              "connection: unsubscribe one first")
        async with self._lock:
            since = subscription.since or 0
            if subscription.since is not None and self.kept and since + 1 < self.kept[0]["seq"]:
                raise Refused("resume_gap", f"events after seq {since} are no longer kept "
                                            f"(the oldest kept is {self.kept[0]['seq']})",
                              since=since, min_available_seq=self.kept[0]["seq"])
            replayed = [e for e in self.kept if e["seq"] > since and subscription.matches(e)]
            for event in replayed:
                await self.send(event)
            self.subscriptions[sub_id] = subscription
        return {"subscription_id": sub_id, "replayed_events": len(replayed)}
