"""A run is created once and a client's value is never dropped silently: an Idempotency-Key makes a
retried creation return the first one's run (across processes, after the process that took the
first attempt was killed), and a resume that answers no waiting interrupt is refused (409) unless
STRICT_RESUME=false restores the Platform's lenient behaviour. Real processes, the real SDK."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import uuid
from typing import Any

import httpx
import psycopg
import pytest
from langgraph_sdk import get_client

from .helpers import runtime_server

pytestmark = pytest.mark.slow


def _post(server, path: str, body: Any, key: str | None, api_key: str = "key-one",
          ) -> tuple[int, Any, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        headers = {"content-type": "application/json", "X-API-Key": api_key}
        if key is not None:
            headers["Idempotency-Key"] = key
        conn.request("POST", path, body=json.dumps(body), headers=headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw.strip() else None, {
            k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def _runs_with_key(database: str, key: str) -> int:
    with psycopg.connect(database) as conn:
        return conn.execute("SELECT count(*) FROM agent_runs WHERE idempotency_key LIKE %s",
                            (key + "%",)).fetchone()[0]


def test_a_retried_creation_with_its_key_runs_once_across_processes(database):
    """The first answer reached the client, then its process died (kill -9); the retry with the
    same key through another process answers the same run, which runs once. Same key, other body:
    422. Another identity's key of the same name is its own. wait and batch replay too."""
    with runtime_server(database, RUN_LEASE_SECONDS="2") as a, \
            runtime_server(database, RUN_LEASE_SECONDS="2") as b:
        tid = a.call("POST", "/threads", {})[1]["thread_id"]
        key = f"create-{uuid.uuid4()}"
        body = {"assistant_id": "slow", "input": {"text": "once", "seconds": 1.0}}
        status, first, headers = _post(a, f"/threads/{tid}/runs", body, key)
        assert status == 200 and "idempotent-replayed" not in headers, first
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        status, again, headers = _post(b, f"/threads/{tid}/runs", body, key)
        assert status == 200 and again["run_id"] == first["run_id"], again
        assert headers["idempotent-replayed"] == "true"
        status, other, _ = _post(b, f"/threads/{tid}/runs", {**body, "input": {"text": "other"}}, key)
        assert status == 422 and "Idempotency-Key" in other["message"], other

        async def outcome() -> dict[str, Any]:
            c = get_client(url=b.base, api_key="key-one")
            await c.runs.join(tid, first["run_id"])  # (taken over once the lease lapsed)
            return await c.threads.get_state(tid)

        log = asyncio.run(outcome())["values"]["log"]
        assert log.count("in:once") == 1 and log.count("out:once") == 1, log
        assert _runs_with_key(database, key) == 1

        waited = f"wait-{uuid.uuid4()}"
        wait_body = {"assistant_id": "weather", "input": {"question": "rain?"}}
        one = _post(b, "/runs/wait", wait_body, waited)
        two = _post(b, "/runs/wait", wait_body, waited)
        assert one[0] == two[0] == 200 and one[1] == two[1] and one[1]["answers"], (one, two)
        assert two[2]["idempotent-replayed"] == "true"
        assert _post(b, "/runs/wait", wait_body, waited, api_key="key-two")[2].get(
            "idempotent-replayed") is None  # (another identity: its own key space)
        assert _runs_with_key(database, waited) == 2

        batch = f"batch-{uuid.uuid4()}"
        first_batch = _post(b, "/runs/batch", [wait_body, wait_body], batch)[1]
        second_batch = _post(b, "/runs/batch", [wait_body, wait_body], batch)
        assert [r["run_id"] for r in second_batch[1]] == [r["run_id"] for r in first_batch]
        assert second_batch[2]["idempotent-replayed"] == "true"
        for bad in ("", "x" * 256, "caf\u00e9"):
            status, answer, _ = _post(b, "/runs", wait_body, bad.encode("utf-8").decode("latin-1"))
            assert status == 422 and "Idempotency-Key" in answer["message"], (bad, answer)


def _conflict(answer: Any) -> bool:
    return isinstance(answer, httpx.HTTPStatusError) and answer.response.status_code == 409


def test_a_late_resume_is_refused_not_dropped(database):
    """Two resumes of one interrupt, the second after the first run finished: 409 naming the
    thread, the first decision kept alone. A resume naming an interrupt that does not wait: 409
    naming it. STRICT_RESUME=false: the Platform's behaviour (200, the value dropped)."""
    async def scenario(server, strict: bool = True) -> tuple[list[str], Any, Any]:
        c = get_client(url=server.base, api_key="key-one")
        tid = (await c.threads.create())["thread_id"]
        await c.runs.wait(tid, "approve", input={"text": "deploy", "seconds": 0})
        waiting = (await c.threads.get_state(tid))["interrupts"]
        assert waiting, "the run stops at its interrupt"
        named = None
        try:
            if strict:
                await c.runs.wait(tid, "approve", command={"resume": {"0" * 32: "maybe"}})
        except httpx.HTTPStatusError as exc:
            named = exc
        await c.runs.wait(tid, "approve", command={"resume": "yes"})
        try:
            late = await c.runs.wait(tid, "approve", command={"resume": "no"})
        except httpx.HTTPStatusError as exc:
            late = exc
        return (await c.threads.get_state(tid))["values"]["log"], late, named

    with runtime_server(database) as server:
        log, late, named = asyncio.run(scenario(server))
        assert _conflict(late) and "no interrupt waiting" in late.response.text, late
        assert _conflict(named) and "0" * 32 in named.response.text, named
        assert log == ["in:deploy", "decision:yes"], log
    with runtime_server(database, STRICT_RESUME="false") as lenient:
        log, late, _ = asyncio.run(scenario(lenient, strict=False))
        assert not _conflict(late) and log.count("decision:yes") == 1, (late, log)
