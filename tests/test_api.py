"""The generated service end to end with the real langgraph-sdk client, on a throwaway PostgreSQL:
runs (wait, stream, background, stateless), interrupts, state across restarts and database outages,
thread isolation, and each protective status code (401, 413, 422, 429) and the run timeout."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client

from .servers import free_port, http_status, postgres_cluster, process, project_python, wait_until

pytestmark = pytest.mark.slow
KEYS = "key-one,key-two,key-limited"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    from agentgen import generate, load_spec

    out = tmp_path_factory.mktemp("api") / "demo"
    generate(load_spec({"name": "demo", "scale": "small"}), out, git=False)
    return out


@pytest.fixture(scope="module")
def database() -> Iterator:
    with postgres_cluster() as pg:
        yield pg, pg.create_database("api")


@contextlib.contextmanager
def server(project: Path, url: str, **settings: str) -> Iterator[tuple[str, Any]]:
    port = free_port()
    env = {"DATABASE_URL": url, "PORT": str(port), "WORKERS": "1", "API_KEYS": KEYS,
           "SECRETS_DIR": str(project / "no-secrets"), "LOG_LEVEL": "WARNING",
           "DB_CONNECT_TIMEOUT": "2", "METRICS_PORT": str(free_port()), **settings}
    base = f"http://127.0.0.1:{port}"
    with process([project_python(project), "-m", "agentgen_runtime"], cwd=project, env=env, what="service",
                 ready=lambda: http_status(f"{base}/health") == 200) as proc:
        yield base, proc


def call(base: str, path: str, body: object = None, key: str | None = "key-one",
         raw: bytes | None = None) -> tuple[int, Any, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(f"{base}{path}", data=data, method="POST" if data else "GET",
                                     headers={"content-type": "application/json",
                                              **({"X-API-Key": key} if key else {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read() or b"null"), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), exc.headers


HELLO = {"messages": [{"role": "user", "content": "hello"}]}


def test_sdk_end_to_end(project, database):
    pg, url = database
    metrics_port = free_port()
    with server(project, url, METRICS_PORT=str(metrics_port)) as (base, _):
        async def scenario() -> None:
            client = get_client(url=base, api_key="key-one")
            assistants = await client.assistants.search()
            assert {a["graph_id"] for a in assistants} == {"agent", "approval"}
            assert (await client.assistants.get("agent"))["graph_id"] == "agent"

            thread = await client.threads.create(metadata={"user": "u1"})
            tid = thread["thread_id"]
            result = await client.runs.wait(tid, "agent", input=HELLO)
            assert result["messages"][-1]["content"] == "Echo: hello"

            events = [part async for part in client.runs.stream(
                tid, "agent", input={"messages": [{"role": "user", "content": "stream me"}]},
                stream_mode=["values", "updates", "messages-tuple"])]
            kinds = [e.event for e in events]
            assert kinds[0] == "metadata" and {"values", "updates", "messages"} <= set(kinds)
            tokens = [e.data[0]["content"] for e in events if e.event == "messages"]
            assert "".join(tokens) == "Echo: stream me"

            state = await client.threads.get_state(tid)
            assert [m["content"] for m in state["values"]["messages"]] == [
                "hello", "Echo: hello", "stream me", "Echo: stream me"]
            # durability "async" (the default) keeps every step: the first run's input, then each
            # superstep of this one-node graph (steps number on across runs), newest first
            history = await client.threads.get_history(tid, limit=20)
            assert [h["metadata"]["step"] for h in history] == [4, 3, 2, 1, 0, -1], [
                h["metadata"] for h in history]
            assert (await client.threads.search(metadata={"user": "u1"}))[0]["thread_id"] == tid

            run = await client.runs.create(tid, "agent", input={"messages": [
                {"role": "user", "content": "in the background"}]})
            joined = await client.runs.join(tid, run["run_id"])
            assert joined["messages"][-1]["content"] == "Echo: in the background"
            assert (await client.runs.get(tid, run["run_id"]))["status"] == "success"

            stateless = await client.runs.wait(None, "agent", input=HELLO)
            assert stateless["messages"][-1]["content"] == "Echo: hello"

            approval = (await client.threads.create())["thread_id"]
            paused = await client.runs.wait(approval, "approval", input=HELLO)
            assert paused["__interrupt__"][0]["value"]["draft"] == "Echo: hello"
            assert (await client.threads.get(approval))["status"] == "interrupted"
            resumed = await client.runs.wait(approval, "approval", command={"resume": "Better answer"})
            assert [m["content"] for m in resumed["messages"]] == ["hello", "Better answer"]

            update = await client.threads.update_state(tid, {"messages": [
                {"role": "user", "content": "added by hand"}]})
            assert update["checkpoint"]["checkpoint_id"]

            intruder = get_client(url=base, api_key="key-two")
            for attempt in (intruder.threads.get_state(tid), intruder.threads.get(tid),
                            intruder.runs.wait(tid, "agent", input=HELLO),
                            intruder.threads.delete(tid)):
                with pytest.raises(Exception) as info:
                    await attempt
                assert info.value.response.status_code == 404
            assert await intruder.threads.search() == []

            doomed = (await client.threads.create())["thread_id"]
            await client.threads.delete(doomed)
            with pytest.raises(Exception) as info:
                await client.threads.get(doomed)
            assert info.value.response.status_code == 404

        asyncio.run(scenario())
        # metrics on their own port, never on the API's (nor through a proxy in front of it)
        assert http_status(f"{base}/metrics") == 404
        metrics = urllib.request.urlopen(  # noqa: S310
            f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
        for name in ("agent_http_requests_total", "agent_http_request_duration_seconds_bucket",
                     "agent_runs_active", "agent_run_duration_seconds_bucket",
                     "agent_llm_tokens_total", "agent_llm_cost_usd_total",
                     "agent_checkpointer_operations_total", "agent_dependency_up"):
            assert name in metrics, name


def test_state_survives_restart_and_database_outage(project, database):
    pg, url = database
    with server(project, url) as (base, _):
        status, thread, _ = call(base, "/threads", {})
        tid = thread["thread_id"]
        status, _, _ = call(base, f"/threads/{tid}/runs/wait", {"assistant_id": "agent", "input": HELLO})
        assert status == 200
    with server(project, url) as (base, _):  # a new process: only PostgreSQL remembers
        status, state, _ = call(base, f"/threads/{tid}/state")
        assert status == 200 and state["values"]["messages"][-1]["content"] == "Echo: hello"
        pg.stop()
        try:
            started = time.monotonic()
            wait_until(lambda: http_status(f"{base}/ready", timeout=5) == 503, 5, "ready -> 503")
            assert time.monotonic() - started < 5
        finally:
            pg.start()
        wait_until(lambda: http_status(f"{base}/ready", timeout=5) == 200, 20, "ready -> 200")
        status, state, _ = call(base, f"/threads/{tid}/state")
        assert status == 200 and [m["content"] for m in state["values"]["messages"]] == [
            "hello", "Echo: hello"]


def test_protective_status_codes(project, database):
    _, url = database
    with server(project, url, RATE_LIMIT_PER_MINUTE="5", MAX_REQUEST_BYTES="4096") as (base, _):
        assert call(base, "/threads", {}, key=None)[0] == 401
        assert call(base, "/threads", {}, key="wrong")[0] == 401
        assert call(base, "/threads", raw=b"x" * 10_000)[0] == 413
        status, body, _ = call(base, "/runs/wait", {"assistant_id": "agent", "input": "not a dict"})
        assert status == 422 and "body.input" in body["message"] and body["request_id"]
        assert call(base, "/runs/wait", {"input": HELLO})[0] == 422
        assert call(base, "/runs/wait", {"assistant_id": "agent", "stream_mode": "trace"})[0] == 422
        assert call(base, "/assistants/nope")[0] == 404
        codes = [call(base, "/threads", {}, key="key-limited")[0] for _ in range(7)]
        assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
        status, _, headers = call(base, "/threads", {}, key="key-limited")
        assert status == 429 and 1 <= int(headers["Retry-After"]) <= 60
        assert call(base, "/threads", {}, key="key-two")[0] == 200  # limits are per key
    with server(project, url, LLM_FAKE_LATENCY_SECONDS="2", RUN_TIMEOUT_SECONDS="0.3") as (base, _):
        # The run times out: `wait` answered at once (the run exists); the body says why.
        status, body, _ = call(base, "/runs/wait", {"assistant_id": "agent", "input": HELLO})
        assert status == 200 and body["__error__"]["error"] == "TimeoutError", body
        assert "0.3" in body["__error__"]["message"]


def test_streaming_is_incremental_and_shutdown_is_graceful(project, database):
    _, url = database
    with server(project, url, LLM_FAKE_LATENCY_SECONDS="0.8") as (base, proc):
        async def stream() -> list[tuple[float, str]]:
            client = get_client(url=base, api_key="key-one")
            tid = (await client.threads.create())["thread_id"]
            start = time.monotonic()
            return [(time.monotonic() - start, part.event) async for part in client.runs.stream(
                tid, "agent", input=HELLO, stream_mode="values")]

        timeline = asyncio.run(stream())
        assert timeline[0][1] == "metadata" and timeline[0][0] < 0.5
        assert timeline[-1][1] == "values" and timeline[-1][0] >= 0.8

        # SIGTERM while a run is in flight: the run finishes and its response arrives.
        status, thread, _ = call(base, "/threads", {})
        outcome: dict = {}
        worker = threading.Thread(target=lambda: outcome.update(result=call(
            base, f"/threads/{thread['thread_id']}/runs/wait", {"assistant_id": "agent", "input": HELLO})))
        worker.start()
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGTERM)
        worker.join(10)
        assert outcome["result"][0] == 200
        assert outcome["result"][1]["messages"][-1]["content"] == "Echo: hello"
