"""The run engine across processes: two runtime processes on one PostgreSQL, the real `langgraph-sdk`
client. Each test says what the clients were told and what the thread kept: every acknowledged
input (and its answer) exactly once, whatever the strategy, the process killed or the stream dropped.

The `slow` test graph logs `in:<text>` then, after `seconds`, `out:<text>`."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable

import httpx
import pytest
from langgraph_sdk import get_client

from ..servers import free_port, http_status, stop_process, wait_until
from .helpers import runtime_server

pytestmark = [pytest.mark.slow, pytest.mark.serial]
PAIRS = 50
ENGINE = {"RUN_LEASE_SECONDS": "3", "RATE_LIMIT_PER_MINUTE": "1000000", "MAX_CONCURRENT_RUNS": "10"}


def client(server):
    return get_client(url=server.base, api_key="key-one", timeout=60)


def log_of(server, thread_id: str) -> list[str]:
    status, state, _ = server.call("GET", f"/threads/{thread_id}/state")
    assert status == 200, state
    return (state["values"] or {}).get("log", [])


@pytest.fixture(scope="module")
def pair(database):
    """Two runtime processes on one database."""
    with runtime_server(database, **ENGINE) as a, runtime_server(database, **ENGINE) as b:
        yield a, b


async def _double_text(a, b, strategy: str, index: int) -> dict:
    """Two runs on one new thread, sent at once through different processes."""
    ca, cb = client(a), client(b)
    thread = await ca.threads.create()
    tid = thread["thread_id"]

    async def send(c, text: str):
        try:
            return await c.runs.create(tid, "slow", input={"text": text, "seconds": 0.3},
                                       multitask_strategy=strategy)
        except httpx.HTTPStatusError as exc:
            return exc.response.status_code

    first, second = await asyncio.gather(send(ca, f"a{index}"), send(cb, f"b{index}"))
    return {"thread_id": tid, "answers": {f"a{index}": first, f"b{index}": second}}


async def _settle(server, tid: str) -> list[dict]:
    c = client(server)
    for _ in range(200):
        runs = await c.runs.list(tid, limit=10)
        if all(r["status"] not in ("pending", "running") for r in runs):
            return runs
        await asyncio.sleep(0.1)
    raise AssertionError(f"runs of {tid} did not settle: {runs}")


@pytest.mark.parametrize("strategy", ["reject", "enqueue", "interrupt", "rollback"])
def test_concurrent_runs_on_one_thread_through_two_processes(pair, strategy):
    a, b = pair

    async def scenario():
        outcomes = await asyncio.gather(*(_double_text(a, b, strategy, i) for i in range(PAIRS)))
        return [(o, await _settle(a, o["thread_id"])) for o in outcomes]

    for outcome, runs in asyncio.run(scenario()):
        tid, answers = outcome["thread_id"], outcome["answers"]
        log = log_of(a, tid)
        counts = Counter(log)
        assert all(n == 1 for n in counts.values()), (strategy, log)  # nothing twice
        accepted = {text: run for text, run in answers.items() if isinstance(run, dict)}
        by_id = {r["run_id"]: r for r in runs}
        if strategy == "reject":
            assert len(accepted) >= 1 and all(v == 409 for k, v in answers.items() if k not in accepted)
        else:
            assert len(accepted) == 2, answers
        # runs in the order the thread took them
        ordered = sorted(accepted.items(), key=lambda kv: kv[1]["created_at"])
        for position, (text, run) in enumerate(ordered):
            final = by_id.get(run["run_id"])
            last = position == len(ordered) - 1
            if strategy in ("reject", "enqueue") or last:
                assert final is not None and final["status"] == "success", (strategy, final)
                assert counts[f"in:{text}"] == 1 and counts[f"out:{text}"] == 1, (strategy, log)
            elif strategy == "interrupt":
                # the first run stopped (kept as interrupted, with what it had saved) unless it
                # had finished already
                assert final is not None and final["status"] in ("interrupted", "success"), final
                if final["status"] == "success":
                    assert counts[f"out:{text}"] == 1, log
            else:  # rollback: the first run is gone with everything it wrote
                if final is None:
                    assert f"in:{text}" not in counts and f"out:{text}" not in counts, log
                else:
                    assert final["status"] == "success", final
        if strategy == "enqueue":  # serialized: one run's answer before the next input
            first, second = (text for text, _ in ordered)
            assert log == [f"in:{first}", f"out:{first}", f"in:{second}", f"out:{second}"], log


def test_a_background_run_survives_kill_9_of_its_process(database):
    with runtime_server(database, **ENGINE) as a, runtime_server(database, **ENGINE) as b:
        tid = a.call("POST", "/threads", {})[1]["thread_id"]
        status, run, _ = a.call("POST", f"/threads/{tid}/runs", {
            "assistant_id": "slow", "input": {"text": "survivor", "seconds": 3}})
        assert status == 200, run
        wait_until(lambda: a.call("GET", f"/threads/{tid}/runs/{run['run_id']}")[1]["status"]
                   == "running", 10, "the run to start on its process")
        killed = time.monotonic()
        stop_process(a.proc, signal.SIGKILL)
        status, joined, _ = b.call("GET", f"/threads/{tid}/runs/{run['run_id']}/join", timeout=60)
        took = time.monotonic() - killed
        assert status == 200 and joined["log"] == ["in:survivor", "out:survivor"], joined
        final = b.call("GET", f"/threads/{tid}/runs/{run['run_id']}")[1]
        assert final["status"] == "success"
        assert log_of(b, tid) == ["in:survivor", "out:survivor"]
        # noticed within lease + reaper period (3 + 1.5 s), then the whole run again at most
        assert took < 3 + 1.5 + 3 + 5, took


def test_a_delayed_run_starts_after_its_delay_on_any_process(database):
    """`after_seconds=2` through the SDK: pending until then (its process killed meanwhile), run by
    the other process no earlier than 2 s after it was created; the thread's next run waits behind
    it; a negative delay is a 422."""
    import psycopg

    with runtime_server(database, **ENGINE) as a, runtime_server(database, **ENGINE) as b:
        async def create():
            c = client(a)
            tid = (await c.threads.create())["thread_id"]
            run = await c.runs.create(tid, "slow", input={"text": "later", "seconds": 0},
                                      after_seconds=2)
            return tid, run

        tid, run = asyncio.run(create())
        stop_process(a.proc, signal.SIGKILL)  # the process that took it is gone
        status, after, _ = b.call("POST", f"/threads/{tid}/runs", {
            "assistant_id": "slow", "input": {"text": "next", "seconds": 0}})
        assert status == 200, after
        time.sleep(1)
        assert b.call("GET", f"/threads/{tid}/runs/{run['run_id']}")[1]["status"] == "pending"
        status, joined, _ = b.call("GET", f"/threads/{tid}/runs/{after['run_id']}/join", timeout=30)
        assert status == 200 and joined["log"] == ["in:later", "out:later", "in:next", "out:next"]
        with psycopg.connect(database) as conn:
            waited, attempt = conn.execute(
                "SELECT extract(epoch FROM started_at - created_at), attempt FROM agent_runs "
                "WHERE run_id = %s", (run["run_id"],)).fetchone()
        assert 2 <= waited < 2 + 3 and attempt == 1, waited  # claimed once, by b's poll
        status, refused, _ = b.call("POST", f"/threads/{tid}/runs", {
            "assistant_id": "slow", "input": {"text": "x"}, "after_seconds": -1})
        assert status == 422 and "after_seconds" in refused["message"], refused


class Balancer:
    """A TCP load balancer for the tests: each connection goes to the first backend that accepts
    it (as a Service sends new connections to the replicas still up)."""

    def __init__(self, ports: list[int]) -> None:
        self.ports, self.port = ports, free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _pipe(self, reader, writer) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()

    async def _handle(self, reader, writer) -> None:
        for port in self.ports:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            return
        writer.close()

    def __enter__(self) -> str:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.port), self.loop).result(5)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def _wait_while_its_process_goes(url: str, tid: str, text: str, seconds: float,
                                 goes: Callable[[], None]) -> dict:
    """`runs.wait` through the balancer; once the run is running, `goes()` takes its process away;
    the SDK must reconnect (it warns) and return the run's answer."""

    async def scenario():
        c = get_client(url=url, api_key="key-one", timeout=60)
        waiting = asyncio.ensure_future(c.runs.wait(tid, "slow", input={"text": text,
                                                                        "seconds": seconds}))
        for _ in range(100):
            runs = await c.runs.list(tid)
            if runs and runs[0]["status"] == "running":
                break
            await asyncio.sleep(0.1)
        goes()
        return await waiting

    with pytest.warns(UserWarning, match="reconnect"):
        return asyncio.run(scenario())


def test_a_waiting_client_gets_its_answer_after_kill_9_of_the_process(database):
    """`runs.wait` through a load balancer; the process running the run is killed: the SDK
    reconnects to the run's Location (its join) on the other process and gets the answer once."""
    with runtime_server(database, **ENGINE) as a, runtime_server(database, **ENGINE) as b, \
            Balancer([a.port, b.port]) as url:
        tid = a.call("POST", "/threads", {})[1]["thread_id"]
        result = _wait_while_its_process_goes(url, tid, "w", 3,
                                              lambda: stop_process(a.proc, signal.SIGKILL))
        assert result["log"] == ["in:w", "out:w"], result
        assert log_of(b, tid) == ["in:w", "out:w"]


def test_a_waiting_client_gets_the_real_result_after_sigterm_hands_its_run_on(database):
    """`runs.wait` through a load balancer on a run longer than the grace period; its process gets
    SIGTERM and hands the run back: the response is cut off (never a complete empty 200), the SDK
    rejoins at Location on the other process and returns the run's real result."""
    with runtime_server(database, **ENGINE, SHUTDOWN_GRACE_SECONDS="1") as a, \
            runtime_server(database, **ENGINE) as b, Balancer([a.port, b.port]) as url:
        tid = a.call("POST", "/threads", {})[1]["thread_id"]
        result = _wait_while_its_process_goes(url, tid, "t", 4,
                                              lambda: a.proc.send_signal(signal.SIGTERM))
        assert result["log"] == ["in:t", "out:t"], result
        assert log_of(b, tid) == ["in:t", "out:t"]


def test_a_dropped_stream_is_joined_from_the_other_process(pair):
    a, b = pair

    async def scenario():
        ca, cb = client(a), client(b)
        tid = (await ca.threads.create())["thread_id"]
        seen = []
        async for part in ca.runs.stream(tid, "slow", input={"text": "s", "seconds": 1.5},
                                         stream_mode="updates", stream_resumable=True,
                                         on_disconnect="continue"):
            seen.append(part)
            if part.event == "updates":
                break  # the client goes away after the first step
        run_id = seen[0].data["run_id"]
        rest = [p async for p in cb.runs.join_stream(tid, run_id, last_event_id="2")]
        return tid, run_id, seen, rest

    tid, run_id, seen, rest = asyncio.run(scenario())
    assert [p.event for p in seen] == ["metadata", "updates"]
    assert [p.event for p in rest] == ["updates"] and "reply" in rest[0].data, rest
    assert b.call("GET", f"/threads/{tid}/runs/{run_id}")[1]["status"] == "success"
    assert log_of(a, tid) == ["in:s", "out:s"]


def test_a_run_stream_joined_with_stream_modes_sends_only_those(pair):
    """The SDK's list (`?stream_mode=a&stream_mode=b`), langgraph-api's JSON array, a mode the run
    never streamed, an unknown mode (422 naming it); from the process that did not run it."""
    a, b = pair

    async def scenario():
        ca, cb = client(a), client(b)
        tid = (await ca.threads.create())["thread_id"]
        run = await ca.runs.create(tid, "slow", input={"text": "m", "seconds": 0.2},
                                   stream_mode=["values", "updates", "custom"])
        joined = {}
        for modes in (None, ["updates"], ["values", "updates"], '["values"]', ["messages"]):
            joined[str(modes)] = [p.event async for p in cb.runs.join_stream(
                tid, run["run_id"], stream_mode=modes)]
        try:
            await anext(aiter(cb.runs.join_stream(tid, run["run_id"], stream_mode="valuez")))
            refused = None
        except httpx.HTTPStatusError as exc:
            refused = exc.response
        return joined, refused

    joined, refused = asyncio.run(scenario())
    assert joined["None"] == ["metadata", "values", "updates", "values", "updates", "values"]
    assert joined["['updates']"] == ["updates", "updates"]
    assert joined["['values', 'updates']"] == ["values", "updates", "values", "updates", "values"]
    assert joined['["values"]'] == ["values"] * 3
    assert joined["['messages']"] == []
    assert refused is not None and refused.status_code == 422
    assert "'valuez' is not one of values, updates" in refused.json()["message"]


def test_sigterm_under_load_refuses_or_answers_every_request(database):
    with runtime_server(database, **ENGINE, SHUTDOWN_GRACE_SECONDS="5") as a, \
            runtime_server(database, **ENGINE) as b:
        threads = [a.call("POST", "/threads", {})[1]["thread_id"] for _ in range(8)]
        results: list[tuple[str, object]] = []
        stop = threading.Event()

        def worker(tid: str) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                text = f"{tid[:8]}-{n}"
                try:
                    status, body, headers = a.call("POST", f"/threads/{tid}/runs/wait", {
                        "assistant_id": "slow", "input": {"text": text, "seconds": 0.5}}, timeout=30)
                    results.append((text, (status, body, headers)))
                except ConnectionRefusedError:
                    results.append((text, "refused"))
                    return
                except (ConnectionResetError, TimeoutError) as exc:
                    results.append((text, exc))
                    return

        clients = [threading.Thread(target=worker, args=(tid,)) for tid in threads]
        for t in clients:
            t.start()
        time.sleep(2)
        a.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert http_status(f"{a.base}/ready") in (503, None)  # at once: refused or 503
        stop.set()
        for t in clients:
            t.join(40)
        assert not any(t.is_alive() for t in clients), "a request hung"
        assert time.monotonic() - signalled < 40
        answered = 0
        for text, outcome in results:
            assert not isinstance(outcome, Exception), (text, outcome)
            if outcome == "refused":
                continue
            status, body, headers = outcome
            if status == 503:
                assert headers.get("retry-after") and headers.get("connection") == "close", headers
                continue
            assert status == 200 and body["log"][-1] == f"out:{text}", (text, outcome)
            answered += 1
        assert answered > 8
        for tid in threads:  # every answered run is in its thread, once
            counts = Counter(log_of(b, tid))
            assert all(n == 1 for n in counts.values()), counts
            for text, outcome in results:
                if isinstance(outcome, tuple) and outcome[0] == 200 and text.startswith(tid[:8]):
                    assert counts[f"out:{text}"] == 1


def test_postgres_restarted_under_load_loses_no_acknowledged_run():
    """Background runs created by 4 clients through two processes while PostgreSQL stops for 3 s
    and comes back: a creation is either refused (5xx, nothing acknowledged) or its run ends
    `success` with its input and answer once in its thread."""
    from ..servers import postgres_cluster

    with postgres_cluster() as pg:
        url = pg.create_database("restart")
        with runtime_server(url, **ENGINE) as a, runtime_server(url, **ENGINE) as b:
            acknowledged: list[tuple[str, str, str]] = []  # (thread, run, text)
            refused: list[int] = []
            stop = threading.Event()

            def client(server, name: str) -> None:
                tid = None
                n = 0
                while not stop.is_set():
                    n += 1
                    try:
                        if tid is None:
                            status, body, _ = server.call("POST", "/threads", {}, timeout=20)
                            if status != 200:
                                refused.append(status)
                                time.sleep(0.2)
                                continue
                            tid = body["thread_id"]
                        text = f"{name}-{n}"
                        status, body, _ = server.call("POST", f"/threads/{tid}/runs", {
                            "assistant_id": "slow", "input": {"text": text, "seconds": 0.2}},
                            timeout=20)
                    except OSError:
                        refused.append(0)
                        continue
                    if status == 200:
                        acknowledged.append((tid, body["run_id"], text))
                    else:
                        assert status >= 500, (status, body)
                        refused.append(status)
                    time.sleep(0.05)

            workers = [threading.Thread(target=client, args=(s, f"{s.port}-{i}"))
                       for i in range(2) for s in (a, b)]
            for w in workers:
                w.start()
            time.sleep(2)
            pg.stop()
            time.sleep(3)
            pg.start()
            time.sleep(3)
            stop.set()
            for w in workers:
                w.join(30)
            assert refused and len(acknowledged) > 20, (len(refused), len(acknowledged))

            def settled() -> bool:
                for tid, rid, text in acknowledged:
                    status, body, _ = a.call("GET", f"/threads/{tid}/runs/{rid}")
                    if status >= 500:
                        return False  # still reconnecting: asked again
                    assert status == 200, (text, status, body)  # 404: an acknowledged run lost
                    if body["status"] in ("pending", "running"):
                        return False
                return True

            wait_until(settled, 60, "every acknowledged run to end")
            for tid, rid, text in acknowledged:
                final = a.call("GET", f"/threads/{tid}/runs/{rid}")[1]
                assert final["status"] == "success", final
                counts = Counter(log_of(b, tid))
                assert counts[f"in:{text}"] == 1 and counts[f"out:{text}"] == 1, (text, counts)


def test_cancel_reaches_the_process_running_the_run_and_the_runs_api(pair):
    """runs.cancel through the other process (interrupt: kept; rollback: gone with its
    checkpoints), cancel_many, runs.list/delete, stateless runs.create and create_batch."""
    a, b = pair

    async def scenario():
        ca, cb = client(a), client(b)
        tid = (await ca.threads.create())["thread_id"]
        done = await ca.runs.wait(tid, "slow", input={"text": "kept", "seconds": 0})
        assert done["log"] == ["in:kept", "out:kept"]
        first = await ca.runs.create(tid, "slow", input={"text": "stopped", "seconds": 5})
        queued = await ca.runs.create(tid, "slow", input={"text": "queued", "seconds": 5})
        await asyncio.sleep(0.5)
        await cb.runs.cancel(tid, first["run_id"], wait=True, action="interrupt")
        stopped = await cb.runs.get(tid, first["run_id"])
        await cb.runs.cancel(tid, queued["run_id"], wait=True, action="rollback")
        rolled = [r["run_id"] for r in await cb.runs.list(tid)]
        third = await ca.runs.create(tid, "slow", input={"text": "many", "seconds": 5})
        await asyncio.sleep(0.5)
        await cb.runs.cancel_many(thread_id=tid, action="rollback")
        for _ in range(100):  # the process running it removes it
            after_many = [r["run_id"] for r in await cb.runs.list(tid)]
            if third["run_id"] not in after_many:
                break
            await asyncio.sleep(0.1)
        await cb.runs.delete(tid, first["run_id"])
        after_delete = [r["run_id"] for r in await cb.runs.list(tid)]
        stateless = await ca.runs.create(None, "slow", input={"text": "bg", "seconds": 0})
        batch = await cb.runs.create_batch([{"assistant_id": "slow", "input": {"text": f"x{i}"}}
                                            for i in range(3)])
        return tid, first, stopped, queued, rolled, third, after_many, after_delete, stateless, batch

    (tid, first, stopped, queued, rolled, third, after_many, after_delete, stateless,
     batch) = asyncio.run(scenario())
    assert stopped["status"] == "interrupted"
    assert queued["run_id"] not in rolled and third["run_id"] not in after_many
    assert first["run_id"] in after_many and first["run_id"] not in after_delete
    # interrupt keeps what the stopped run saved (its first step); rollback leaves nothing
    assert log_of(a, tid) in (["in:kept", "out:kept"], ["in:kept", "out:kept", "in:stopped"])
    assert stateless["thread_id"] is None and len(batch) == 3
    assert all(r["status"] in ("pending", "running", "success") for r in batch)


def test_two_concurrent_resumes_of_one_interrupt_have_a_loser_that_knows(pair):
    """Two clients resume the same interrupt at once through two processes (default strategy):
    one decision is applied and its client gets the result; the other client gets 409 (its
    decision was not applied), never a 200 carrying the winner's state."""
    a, b = pair

    async def scenario(index: int):
        ca, cb = client(a), client(b)
        tid = (await ca.threads.create())["thread_id"]
        paused = await ca.runs.wait(tid, "approve", input={"text": f"p{index}", "seconds": 0.5})
        assert paused["__interrupt__"][0]["value"] == {"question": f"approve p{index}?"}, paused

        async def resume(c, decision: str):
            try:
                return await c.runs.wait(tid, "approve", command={"resume": decision})
            except httpx.HTTPStatusError as exc:
                return exc.response.status_code

        answers = dict(zip(("yes", "no"), await asyncio.gather(resume(ca, "yes"), resume(cb, "no")),
                           strict=True))
        return tid, answers

    for tid, answers in asyncio.run(_gather(scenario, 10)):
        log = log_of(a, tid)
        decisions = [entry for entry in log if entry.startswith("decision:")]
        assert len(decisions) == 1, (log, answers)
        applied = decisions[0].removeprefix("decision:")
        other = "no" if applied == "yes" else "yes"
        assert isinstance(answers[applied], dict) and answers[applied]["log"][-1] == decisions[0], answers
        assert answers[other] == 409, answers


async def _gather(scenario, n: int):
    return await asyncio.gather(*(scenario(i) for i in range(n)))
