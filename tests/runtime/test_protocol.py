"""The thread-centric streaming protocol (langgraph-sdk 0.4's `client.threads.stream(...)`): side by
side with `langgraph dev` on the same graphs (one whose subgraph streams a chat model's tokens, one
whose subgraph stops at an interrupt), the same commands give the same answers and the event
streams carry the same events in the same order (methods, namespaces, lifecycle, interrupts,
message blocks, states; the ids are the servers' own); a reconnect with `since` gets exactly what
followed; the SDK's own session starts, answers the interrupt and reads the output. The
WebSocket transport is compared frame by frame the same way (subscriptions, replay, reconnect,
getTree, refusals) and carries the SDK's session. Then across
two processes on one database: a run started on one is streamed and resumed from the other, and
another identity reaches nothing of it; a run whose process is killed (-9) is finished by the
other, and the session that was reading learns it."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from ..servers import stop_process
from .helpers import AGENTS, langgraph_dev, runtime_server

pytestmark = pytest.mark.slow
STUDIO = AGENTS / "studio"
ALL = ["values", "updates", "messages", "tools", "custom", "lifecycle", "input", "tasks",
       "checkpoints"]
TERMINAL = ("completed", "failed", "interrupted")


async def command(http: httpx.AsyncClient, tid: str, method: Any, params: Any = None,
                  cid: Any = 1) -> tuple[int, Any]:
    body: dict[str, Any] = {"id": cid, "method": method}
    if params is not None:
        body["params"] = params
    answer = await http.post(f"/threads/{tid}/commands", json=body)
    return answer.status_code, answer.json()


async def events(http: httpx.AsyncClient, tid: str, body: dict[str, Any], terminals: int,
                 seconds: float = 30) -> list[dict[str, Any]]:
    """A stream's events until the root has ended `terminals` times (a run's completion or its
    stop at an interrupt)."""
    seen: list[dict[str, Any]] = []

    async def read() -> None:
        async with http.stream("POST", f"/threads/{tid}/stream/events", json=body) as answer:
            assert answer.status_code == 200, await answer.aread()
            assert answer.headers["content-type"].startswith("text/event-stream")
            ended = 0
            async for line in answer.aiter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[len("data: "):])
                seen.append(event)
                params = event["params"]
                if event["method"] == "lifecycle" and not params["namespace"] \
                        and params["data"]["event"] in TERMINAL:
                    ended += 1
                    if ended == terminals:
                        return

    await asyncio.wait_for(read(), seconds)
    return seen


def trace(stream: list[dict[str, Any]]) -> list[tuple]:
    """What is compared of a stream: each event's method, namespace (without task ids), what it
    says (lifecycle transitions, interrupt payloads, message blocks, state keys and log), and
    whether its id is the server's synthetic one or a recorded event's."""
    out = []
    for event in stream:
        params, data = event["params"], event["params"]["data"]
        namespace = tuple(part.partition(":")[0] for part in params["namespace"])
        if event["method"] == "lifecycle":
            said: Any = (data["event"], data.get("graph_name"), data.get("error"))
        elif event["method"] == "input.requested":
            said = data.get("payload")
        elif event["method"] == "messages":
            said = (data["event"], (data.get("delta") or data.get("content") or {}).get("text"))
        elif event["method"] == "values":
            said = (tuple(sorted(data)), tuple(data.get("log") or ()))
        else:
            said = tuple(sorted(data)) if isinstance(data, dict) else data
        out.append((event["method"], namespace, said,
                    "synthetic" if event["event_id"].startswith("synth:") else "recorded"))
    return out


async def scenario(base: str, key: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    headers = {"X-API-Key": key} if key else {}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
        # a run whose subgraph streams tokens, from a thread run.start creates
        tid = str(uuid.uuid4())
        status, answer = await command(http, tid, "run.start",
                                       {"assistant_id": "nested", "input": {"text": "hi"}})
        assert status == 200 and answer["type"] == "success", answer
        out["start"] = (answer["id"], sorted(answer["result"]), answer["meta"])
        nested = await events(http, tid, {"channels": ALL}, 1)
        assert [e["seq"] for e in nested] == list(range(1, len(nested) + 1))
        out["nested"] = trace(nested)
        root = await events(http, tid, {"channels": ["values", "lifecycle"], "namespaces": [[]],
                                        "depth": 0}, 1)
        out["root only"] = trace(root)
        out["only messages"] = trace([e for e in await events(
            http, tid, {"channels": ["messages", "lifecycle"]}, 1) if e["method"] == "messages"])

        # a run stopped by an interrupt inside a subgraph, answered by input.respond
        gate = str(uuid.uuid4())
        status, answer = await command(http, gate, "run.start",
                                       {"assistant_id": "gate", "input": {"text": "doc"}})
        assert status == 200 and answer["type"] == "success", answer
        first = await events(http, gate, {"channels": ALL}, 1)
        out["gate"] = trace(first)
        asked = [e for e in first if e["method"] == "input.requested"]
        assert len(asked) == 1, first
        request = asked[0]["params"]
        out["respond unknown"] = (await command(http, gate, "input.respond", {
            "interrupt_id": "not-an-interrupt", "namespace": request["namespace"],
            "response": "yes"}))[1]["error"]
        status, answer = await command(http, gate, "input.respond", {
            "interrupt_id": request["data"]["interrupt_id"], "namespace": request["namespace"],
            "response": "yes"}, cid=7)
        assert status == 200 and answer["type"] == "success", answer
        out["respond"] = (answer["id"], answer["result"])
        last = first[-1]["seq"]
        resumed = await events(http, gate, {"channels": ALL, "since": last}, 1)
        assert resumed and all(e["seq"] > last for e in resumed), resumed
        out["gate resumed"] = trace(resumed)
        again = await events(http, gate, {"channels": ALL}, 2)  # a new connection replays it all
        assert [e["event_id"] for e in again] == [e["event_id"] for e in first + resumed]
        assert [e["seq"] for e in again] == [e["seq"] for e in first + resumed]
        out["respond consumed"] = (await command(http, gate, "input.respond", {
            "interrupt_id": request["data"]["interrupt_id"], "namespace": request["namespace"],
            "response": "again"}))[1]["error"]
        state = (await http.get(f"/threads/{gate}/state")).json()
        out["gate state"] = state["values"]["log"]

        # refusals: the same status and protocol error code
        out["bad channel"] = (await http.post(f"/threads/{tid}/stream/events",
                                              json={"channels": ["values", "nope"]})).status_code
        out["no channels"] = (await http.post(f"/threads/{tid}/stream/events",
                                              json={"channels": []})).status_code
        refusals = {
            "no id": (tid, "run.start", {"assistant_id": "nested"}, None),
            "unknown command": (tid, "state.get", {}, 2),
            "no assistant": (tid, "run.start", {"input": {}}, 3),
            "unknown assistant": (str(uuid.uuid4()), "run.start",
                                  {"assistant_id": "nope", "input": {}}, 4),
            "bad checkpoint": (tid, "run.start", {"assistant_id": "nested", "input": {},
                                                  "config": {"configurable": {"checkpoint_id": "x"}}},
                               5),
            "respond without id": (gate, "input.respond", {"response": 1}, 6),
            "tree": (tid, "agent.getTree", {}, 7),
            "reconnect": (tid, "subscription.reconnect", {}, 8),
            "unsubscribe": (tid, "subscription.unsubscribe", {"subscription_id": "x"}, 9),
        }
        for name, (thread, method, params, cid) in refusals.items():
            status, answer = await command(http, thread, method, params, cid)
            out[name] = (status, answer.get("type"), answer.get("id"), answer.get("error"))
        status, answer = await command(http, tid, "subscription.subscribe",
                                       {"channels": ["values"]}, 10)
        out["subscribe"] = (status, answer["type"], sorted(answer["result"]))

    out.update(await sdk_session(base, key, "sse"))
    return out


async def sdk_session(base: str, key: str | None, transport: str) -> dict[str, Any]:
    """The SDK's own session: start, wait for the interrupt, answer it, read the output. (On a
    WebSocket the handshake carries the stream's headers, not the client's: the key is given to
    the stream.)"""
    client = get_client(url=base, api_key=key)
    async with client.threads.stream(assistant_id="gate", transport=transport,
                                     headers={"X-API-Key": key} if key else None) as session:
        await session.run.start(input={"text": "memo"})
        for _ in range(200):
            if session.interrupted:
                break
            await asyncio.sleep(0.05)
        interrupts = [i["namespace"][0].partition(":")[0] for i in session.interrupts]
        await session.run.respond("no")
        return {"sdk interrupts": interrupts,
                "sdk output": (await session.output.with_timeout(20))["log"]}


class Socket:
    """A raw protocol WebSocket: commands out, their answers and the events apart."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.events: list[dict[str, Any]] = []
        self.answers: dict[Any, dict[str, Any]] = {}

    async def send(self, payload: Any) -> None:
        await self.connection.send(payload if isinstance(payload, str) else json.dumps(payload))

    async def read_until(self, done: Any, seconds: float = 30) -> None:
        async def read() -> None:
            while not done():
                frame = json.loads(await self.connection.recv())
                if frame.get("type") == "event":
                    self.events.append(frame)
                else:
                    self.answers[frame.get("id")] = frame

        await asyncio.wait_for(read(), seconds)

    async def ask(self, cid: int, method: str, params: Any) -> dict[str, Any]:
        await self.send({"id": cid, "method": method, "params": params})
        await self.read_until(lambda: cid in self.answers)
        return self.answers[cid]

    def ended(self, times: int) -> Any:
        """Whether the root has ended `times` times (replays counted once: by event id)."""
        return lambda: len({e["event_id"] for e in self.events if e["method"] == "lifecycle"
                            and not e["params"]["namespace"]
                            and e["params"]["data"]["event"] in TERMINAL}) >= times


def answer_shape(answer: dict[str, Any]) -> tuple:
    result = answer.get("result")
    return (answer["type"], answer.get("id"), answer.get("error"),
            sorted(result) if isinstance(result, dict) else None)


async def socket_scenario(base: str, key: str | None, resume: bool) -> dict[str, Any]:
    """The WebSocket transport, frame by frame, up to a run stopped at an interrupt; with `resume`
    the answer's run followed to its end and the SDK's session on the transport. (langgraph dev's
    WebSocket loses a resumed run's events now and then, or the run itself: not compared.)"""
    from websockets.asyncio.client import connect

    out: dict[str, Any] = {}
    headers = {"X-API-Key": key} if key else {}
    tid = str(uuid.uuid4())  # created by the run.start sent on the socket
    url = base.replace("http://", "ws://") + f"/threads/{tid}/stream/events"
    async with connect(url, additional_headers=headers) as connection:
        socket = Socket(connection)
        subscribed = await socket.ask(1, "subscription.subscribe", {"channels": ALL})
        out["subscribe"] = (answer_shape(subscribed), subscribed["result"]["replayed_events"])
        out["start"] = answer_shape(await socket.ask(2, "run.start", {
            "assistant_id": "gate", "input": {"text": "doc"}}))
        await socket.read_until(socket.ended(1))
        out["gate"] = trace(socket.events)
        assert [e["seq"] for e in socket.events] == list(range(1, len(socket.events) + 1))
        # (the run records its last events after the root's `interrupted`: the tree settles)
        for attempt in range(50):
            tree = await socket.ask(100 + attempt, "agent.getTree", {})
            children = [c["status"] for c in tree["result"]["tree"].get("children", [])]
            if "started" not in children:
                break
            await asyncio.sleep(0.1)
        out["tree"] = (answer_shape(tree)[0], tree["result"]["tree"]["graph_name"], children)
        # a second subscription replays what its filter takes; live events are sent once
        seen = len(socket.events)
        second = await socket.ask(5, "subscription.subscribe", {"channels": ["lifecycle"]})
        replayed = socket.events[seen:]  # before the answer
        out["second"] = (answer_shape(second), trace(replayed))
        assert second["result"]["replayed_events"] == len(replayed) > 1
        seen = len(socket.events)
        reconnect = await socket.ask(6, "subscription.reconnect", {
            "channels": ["values", "lifecycle"], "since": replayed[1]["seq"],
            "subscription_id": "mine"})
        out["reconnect"] = (answer_shape(reconnect), reconnect["result"]["subscription_id"],
                            trace(socket.events[seen:]))
        assert all(e["seq"] > replayed[1]["seq"] for e in socket.events[seen:])
        out["unsubscribe"] = answer_shape(await socket.ask(7, "subscription.unsubscribe", {
            "subscription_id": second["result"]["subscription_id"]}))
        out["unsubscribe again"] = answer_shape(await socket.ask(8, "subscription.unsubscribe", {
            "subscription_id": second["result"]["subscription_id"]}))
        out["reconnect without since"] = answer_shape(await socket.ask(
            9, "subscription.reconnect", {"channels": ["values"]}))
        out["bad channel"] = answer_shape(await socket.ask(10, "subscription.subscribe",
                                                           {"channels": ["nope"]}))
        out["unknown command"] = answer_shape(await socket.ask(11, "state.get", {}))
        await socket.send("not json")
        await socket.send({"id": "twelve", "method": "agent.getTree"})
        await socket.read_until(lambda: None in socket.answers and "twelve" in socket.answers)
        out["malformed"] = (socket.answers[None]["error"], socket.answers["twelve"]["error"])
        asked = next(e for e in socket.events if e["method"] == "input.requested")["params"]
        out["respond"] = answer_shape(await socket.ask(4, "input.respond", {
            "interrupt_id": asked["data"]["interrupt_id"], "namespace": asked["namespace"],
            "response": "yes"}))
        if not resume:
            return out
        resumed_from = len(socket.events)
        await socket.read_until(socket.ended(2))
        out["resumed"] = trace(socket.events[resumed_from:])

    out.update(await sdk_session(base, key, "websocket"))
    return out


def test_the_protocol_answers_as_under_langgraph_dev(database):
    config = str(STUDIO / "langgraph.json")
    with runtime_server(database, cwd=STUDIO, LANGGRAPH_CONFIG=config) as server:
        ours = asyncio.run(scenario(server.base, "key-one"))

    with langgraph_dev(STUDIO, Path(config)) as url:
        theirs = asyncio.run(scenario(url, None))

    different = {k: (ours[k], theirs.get(k)) for k in ours if ours[k] != theirs.get(k)}
    assert not different, json.dumps(different, indent=1, default=str)
    # what the comparison rests on, stated
    assert ("messages", ("editor",), ("content-block-delta", "tokens"), "recorded") in ours["nested"]
    assert ours["nested"][-1] == ("lifecycle", (), ("completed", "nested", None), "synthetic")
    assert ("input.requested", ("gatekeeper",), {"question": "publish doc?"}, "synthetic") \
        in ours["gate"]
    assert ours["gate state"][-1] == "decision:yes" and ours["sdk output"][-1] == "decision:no"
    assert ours["sdk interrupts"] == ["gatekeeper"]
    assert all(ns == () for _, ns, _, _ in ours["root only"])


def test_the_websocket_transport_answers_as_under_langgraph_dev(database):
    """The full-duplex transport: the same answers to the same frames (subscribe, run.start,
    agent.getTree, input.respond, a second subscription's replay, reconnect with `since`,
    unsubscribe, refusals), the same events; the SDK's session runs on it."""
    config = str(STUDIO / "langgraph.json")
    with runtime_server(database, cwd=STUDIO, LANGGRAPH_CONFIG=config) as server:
        ours = asyncio.run(socket_scenario(server.base, "key-one", resume=True))

    with langgraph_dev(STUDIO, Path(config)) as url:
        theirs = asyncio.run(socket_scenario(url, None, resume=False))

    different = {k: (ours[k], theirs[k]) for k in theirs if ours[k] != theirs[k]}
    assert not different, json.dumps(different, indent=1, default=str)
    assert ("input.requested", ("gatekeeper",), {"question": "publish doc?"}, "synthetic") \
        in ours["gate"]
    assert ours["tree"] == ("success", "gate", ["interrupted"])
    # the answered run, whole (its subgraph's end, the decision in the root's values), and the
    # SDK's session on the transport (what the SSE test finds under langgraph dev)
    resumed = ours["resumed"]
    assert resumed[0] == ("lifecycle", (), ("running", "gate", None), "synthetic")
    assert ("lifecycle", ("gatekeeper",), ("completed", "gatekeeper", None), "synthetic") \
        in resumed
    assert ("values", (), (("log", "messages", "text"), ("draft:doc", "draft:doc", "decision:yes")),
            "recorded") in resumed
    assert resumed[-1] == ("lifecycle", (), ("completed", "gate", None), "synthetic")
    assert ours["sdk interrupts"] == ["gatekeeper"]
    assert ours["sdk output"] == ["draft:memo", "draft:memo", "decision:no"]


def test_a_session_spans_processes_and_identities(database):
    """Started on one process, streamed and answered from another; another key gets 404 on both
    routes, nothing on a WebSocket, and leaves the thread as it was."""
    config = str(STUDIO / "langgraph.json")
    with runtime_server(database, cwd=STUDIO, LANGGRAPH_CONFIG=config) as one, \
            runtime_server(database, cwd=STUDIO, LANGGRAPH_CONFIG=config) as two:

        async def scenario() -> None:
            gate = str(uuid.uuid4())
            async with httpx.AsyncClient(base_url=one.base, headers={"X-API-Key": "key-one"},
                                         timeout=30) as a, \
                    httpx.AsyncClient(base_url=two.base, headers={"X-API-Key": "key-one"},
                                      timeout=30) as b, \
                    httpx.AsyncClient(base_url=two.base, headers={"X-API-Key": "key-two"},
                                      timeout=30) as intruder:
                status, answer = await command(a, gate, "run.start",
                                               {"assistant_id": "gate", "input": {"text": "x"}})
                assert answer["type"] == "success", answer
                first = await events(b, gate, {"channels": ALL}, 1)
                asked = next(e for e in first if e["method"] == "input.requested")["params"]

                # another key: nothing to read, nothing to start or answer on this thread
                refused = await intruder.post(f"/threads/{gate}/stream/events",
                                              json={"channels": ALL})
                assert refused.status_code == 404, refused.text
                for method, params in (
                        ("run.start", {"assistant_id": "gate", "input": {"text": "mine"}}),
                        ("input.respond", {"interrupt_id": asked["data"]["interrupt_id"],
                                           "namespace": asked["namespace"], "response": "stolen"})):
                    status, answer = await command(intruder, gate, method, params)
                    assert status == 404, (method, answer)
                await _socket_refused(two.base, gate, asked)

                status, answer = await command(b, gate, "input.respond", {
                    "interrupt_id": asked["data"]["interrupt_id"], "namespace": asked["namespace"],
                    "response": "yes"})
                assert answer["type"] == "success", answer
                both = await events(a, gate, {"channels": ALL}, 2)
                # the other process replays the same events under the same ids and numbers
                assert [(e["seq"], e["event_id"], e["method"]) for e in both[:len(first)]] == \
                    [(e["seq"], e["event_id"], e["method"]) for e in first]
                state = (await a.get(f"/threads/{gate}/state")).json()
                log = state["values"]["log"]  # (the subgraph hands back the log it was given)
                assert log == ["draft:x", "draft:x", "decision:yes"], state
                runs = (await a.get(f"/threads/{gate}/runs")).json()
                assert [r["status"] for r in runs] == ["success", "success"], runs

        asyncio.run(scenario())


async def _socket_refused(base: str, gate: str, asked: dict[str, Any]) -> None:
    """The WebSocket transport: without a key the handshake is answered 401 (the API's JSON
    error); with another key the socket gets none of the thread's events, its commands on the
    thread are refused, and its first subscription to it ends the socket (1008)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    url = base.replace("http://", "ws://") + f"/threads/{gate}/stream/events"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url):
            pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["error"]
    async with connect(url, additional_headers={"X-API-Key": "key-two"}) as connection:
        socket = Socket(connection)
        for cid, method, params in (
                (2, "run.start", {"assistant_id": "gate", "input": {"text": "mine"}}),
                (3, "input.respond", {"interrupt_id": asked["data"]["interrupt_id"],
                                      "namespace": asked["namespace"], "response": "stolen"})):
            answer = await socket.ask(cid, method, params)
            assert answer["type"] == "error" and "404" in answer["message"], answer
        assert (await socket.ask(4, "agent.getTree", {}))["error"] == "no_such_run"
        refused_sub = await socket.ask(5, "subscription.subscribe", {"channels": ALL})
        assert refused_sub["type"] == "error" and gate in refused_sub["message"], refused_sub
        await connection.wait_closed()
        assert connection.close_code == 1008
    assert socket.events == []


def test_a_session_learns_the_outcome_of_a_run_whose_process_was_killed(database):
    """kill -9 of the process running a session's run: the stream read from the other process
    (opened before the kill) goes on with the run's second attempt and ends with its completion;
    the thread has the input and its answer once."""
    engine = {"RUN_LEASE_SECONDS": "3", "MAX_CONCURRENT_RUNS": "10"}
    with runtime_server(database, **engine) as a, runtime_server(database, **engine) as b:

        async def scenario() -> list[dict[str, Any]]:
            tid = str(uuid.uuid4())
            async with httpx.AsyncClient(base_url=a.base, headers={"X-API-Key": "key-one"},
                                         timeout=30) as on_a, \
                    httpx.AsyncClient(base_url=b.base, headers={"X-API-Key": "key-one"},
                                      timeout=30) as on_b:
                status, answer = await command(on_a, tid, "run.start", {
                    "assistant_id": "slow", "input": {"text": "survivor", "seconds": 3}})
                assert answer["type"] == "success", answer
                run_id = answer["result"]["run_id"]
                reading = asyncio.create_task(events(on_b, tid, {"channels": ALL}, 1, 60))
                for _ in range(100):
                    run = (await on_b.get(f"/threads/{tid}/runs/{run_id}")).json()
                    if run["status"] == "running":
                        break
                    await asyncio.sleep(0.1)
                stop_process(a.proc, signal.SIGKILL)
                seen = await reading
                state = (await on_b.get(f"/threads/{tid}/state")).json()
                assert state["values"]["log"] == ["in:survivor", "out:survivor"], state
                run = (await on_b.get(f"/threads/{tid}/runs/{run_id}")).json()
                assert run["status"] == "success", run
                return seen

        seen = asyncio.run(scenario())
        root = [e["params"]["data"]["event"] for e in seen
                if e["method"] == "lifecycle" and not e["params"]["namespace"]]
        assert root == ["running", "completed"], root
        assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))
        assert seen[-1]["params"]["data"] == {"event": "completed", "graph_name": "slow"}
        last = [e for e in seen if e["method"] == "values"][-1]["params"]["data"]
        assert last["log"] == ["in:survivor", "out:survivor"], last


def test_a_threads_followed_events_become_protocol_events():
    """The session as a library, on a thread's followed events (as `follow_thread` gives them):
    a protocol run's events are numbered and enveloped, a run that is not a protocol run (or made
    no events) is left out, `since` and the channels filter, a failed run ends `failed` with its
    error, and a run rolled back (its row gone) tells no outcome."""
    from agentgen_runtime.streaming.protocol import MARK, Subscription, envelopes

    protocol = {"config": {"configurable": {MARK: True}}}
    rows = {"r1": {"graph_id": "g", "kwargs": protocol, "status": "success"},
            "r2": {"graph_id": "g", "kwargs": {}, "status": "success"},
            "r3": {"graph_id": "g", "kwargs": protocol, "status": "error", "error": "boom"},
            "r4": {"graph_id": "g", "kwargs": protocol, "status": None}}
    followed = [
        ("1-1", "metadata", {"run_id": "r1", "attempt": 1}),
        ("1-2", "values", {"data": {"log": ["a"]}, "timestamp": 5}),
        ("1-3", "messages|sub:1", {"data": {"event": "message-start", "role": "ai", "id": "m"}}),
        ("1-4", "updates|sub:1", {"data": {"__interrupt__": []}, "node": "__interrupt__"}),
        ("1-2147483647", "metadata", {"status": "run_done", "run_id": "r1"}),
        ("2-1", "metadata", {"run_id": "r2", "attempt": 1}),
        ("2-2", "values", {"log": ["legacy"]}),
        ("2-2147483647", "metadata", {"status": "run_done", "run_id": "r2"}),
        ("3-2147483647", "metadata", {"status": "run_done", "run_id": "r9"}),  # runs.wait
        ("4-1", "metadata", {"run_id": "r3", "attempt": 1}),
        ("4-2", "error", {"error": "ValueError", "message": "boom"}),
        ("4-2147483647", "metadata", {"status": "run_done", "run_id": "r3"}),
        ("5-1", "metadata", {"run_id": "r4", "attempt": 1}),
        ("5-2", "values", {"data": {"log": ["b"]}}),
        ("5-2147483647", "metadata", {"status": "run_done", "run_id": "r4"}),
    ]

    async def follow():
        for item in followed:
            yield item
        yield None, "", None  # a keepalive

    asked: list[str] = []

    async def run_of(run_id):  # r4 is rolled back while it runs: its row is gone at its end
        asked.append(run_id)
        row = rows.get(run_id)
        return None if row is None or (row["status"] is None and asked.count(run_id) > 1) else row

    async def collect(subscription):
        return [e async for e in envelopes(follow(), run_of, subscription)]

    everything = asyncio.run(collect(Subscription.parse({"channels": ALL})))
    asked.clear()
    assert everything[-1] is None  # the keepalive passes through
    events = everything[:-1]
    assert [(e["seq"], e["method"], e["event_id"]) for e in events] == [
        (1, "lifecycle", "synth:r1:lc||running"), (2, "values", "1-2"), (3, "messages", "1-3"),
        (4, "lifecycle", "synth:r1:lc|sub:1|completed"), (5, "lifecycle", "synth:r1:lc||completed"),
        (6, "lifecycle", "synth:r3:lc||running"), (7, "lifecycle", "synth:r3:lc||failed"),
        (8, "lifecycle", "synth:r4:lc||running"), (9, "values", "5-2")]
    assert events[1]["params"] == {"namespace": [], "timestamp": 5, "data": {"log": ["a"]}}
    assert events[2]["params"]["namespace"] == ["sub:1"]
    assert events[6]["params"]["data"] == {"event": "failed", "graph_name": "g", "error": "boom"}
    later = asyncio.run(collect(Subscription.parse({"channels": ["lifecycle"], "since": 4})))
    asked.clear()
    assert [e["seq"] for e in later if e] == [5, 6, 7, 8]
    rooted = asyncio.run(collect(Subscription.parse({"channels": ["messages", "values"],
                                                     "namespaces": [["sub:1"]]})))
    assert [e["seq"] for e in rooted if e] == [3]
    for bad in ({}, {"channels": []}, {"channels": ["values", "debug"]}, []):
        with pytest.raises(ValueError):
            Subscription.parse(bad)


def test_a_protocol_runs_output_is_what_a_values_stream_ends_with():
    """The output a protocol run records (what `runs.join`/`runs.get` answer) is the root's last
    values with the interrupts it stopped at as `__interrupt__`, as on every other stream."""
    from typing import TypedDict

    from agentgen_runtime.streaming.protocol import run_protocol
    from agentgen_runtime.streaming.stream import jsonable
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Command, interrupt

    class State(TypedDict, total=False):
        text: str
        answer: str

    def ask(state: State) -> dict:
        return {"answer": interrupt({"question": state["text"]})}

    builder = StateGraph(State)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    graph = builder.compile(checkpointer=InMemorySaver())

    def without_ids(output: dict) -> dict:  # interrupt ids differ from thread to thread
        return {**output, "__interrupt__": [{**i, "id": "-"} for i in output.get("__interrupt__", [])]}

    async def scenario() -> list[dict]:
        outputs = []
        for step in ({"text": "go?"}, Command(resume="yes")):
            recorded: list[str] = []
            ours = await run_protocol(graph, step, {"configurable": {"thread_id": "p"}}, {},
                                      lambda method, _, into=recorded: into.append(method))
            chunks = [jsonable(c) async for c in graph.astream(
                step, {"configurable": {"thread_id": "v"}}, stream_mode="values")]
            assert without_ids(ours) == without_ids(chunks[-1])
            assert "values" in recorded
            outputs.append(ours)
        return outputs

    stopped, finished = asyncio.run(scenario())
    assert [i["value"] for i in stopped["__interrupt__"]] == [{"question": "go?"}]
    assert stopped["text"] == "go?" and "answer" not in stopped
    assert finished == {"text": "go?", "answer": "yes"}

    asyncio.run(scenario())


def test_a_sockets_subscriptions_replay_send_once_and_refuse_a_gap():
    """A WebSocket's session as a library: an event two subscriptions take is sent once; a new
    subscription replays the current run's kept events it takes (before its answer); reconnect
    replays what follows `since`, or answers `resume_gap` when that is no longer kept; unsubscribe
    ends one; agent.getTree answers the last run's tree."""
    from agentgen_runtime.streaming.protocol import MARK, Numbering, Refused, SocketSession

    protocol = {"config": {"configurable": {MARK: True}}}
    rows = {"r1": {"graph_id": "g", "kwargs": protocol, "status": "success"},
            "r2": {"graph_id": "g", "kwargs": protocol, "status": "success"}}

    async def run_of(run_id):
        return rows.get(run_id)

    def run(n: int, run_id: str) -> list[tuple]:
        return [(f"{n}-1", "metadata", {"run_id": run_id, "attempt": 1}),
                (f"{n}-2", "values", {"data": {"log": [run_id]}}),
                (f"{n}-3", "updates|sub:1", {"data": {"x": 1}, "node": "n"}),
                (f"{n}-2147483647", "metadata", {"status": "run_done", "run_id": run_id})]

    async def scenario() -> None:
        sent: list[dict] = []

        async def send(event):
            sent.append(event)

        numbering = Numbering(run_of)
        session = SocketSession(numbering, send)
        assert numbering.tree() is None
        first = await session.command("subscription.subscribe", {"channels": ["values",
                                                                              "lifecycle"]})
        assert first["replayed_events"] == 0
        await session.command("subscription.subscribe", {"channels": ["values"]})

        async def follow(items):
            for item in items:
                yield item

        async for event in numbering.events(follow(run(1, "r1") + run(2, "r2"))):
            await session.deliver(event)
        methods = [(e["seq"], e["method"]) for e in sent]
        # values taken by both subscriptions, sent once; updates (3, 8) taken by none
        assert methods == [(1, "lifecycle"), (2, "values"), (4, "lifecycle"), (5, "lifecycle"),
                           (6, "lifecycle"), (7, "values"), (9, "lifecycle"),
                           (10, "lifecycle")], methods
        sent.clear()
        replay = await session.command("subscription.subscribe", {"channels": ["updates"]})
        assert replay["replayed_events"] == 1 and [e["seq"] for e in sent] == [8]  # r2's only
        sent.clear()
        again = await session.command("subscription.reconnect", {
            "channels": ["lifecycle"], "since": 6, "subscription_id": "mine"})
        assert again == {"subscription_id": "mine", "replayed_events": 2}
        assert [e["seq"] for e in sent] == [9, 10]
        assert await session.command("subscription.unsubscribe",
                                     {"subscription_id": "mine"}) == {}
        for method, params, code in (
                ("subscription.unsubscribe", {"subscription_id": "mine"}, "no_such_subscription"),
                ("subscription.reconnect", {"channels": ["values"]}, "invalid_argument"),
                ("subscription.subscribe", {"channels": ["nope"]}, "invalid_argument")):
            with pytest.raises(Refused) as refused:
                await session.command(method, params)
            assert refused.value.code == code
        tree = (await session.command("agent.getTree", {}))["tree"]
        assert tree["graph_name"] == "g" and tree["status"] == "completed"
        assert [c["namespace"] for c in tree["children"]] == [["sub:1"]]

        # a run's kept events are bounded: a reconnect before them is a gap
        session.kept = type(session.kept)(list(session.kept)[-2:], maxlen=2)
        with pytest.raises(Refused) as gap:
            await session.command("subscription.reconnect", {"channels": ["values"], "since": 5})
        assert gap.value.code == "resume_gap" and gap.value.fields == {
            "since": 5, "min_available_seq": 9}

    asyncio.run(scenario())
