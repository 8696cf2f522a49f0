"""The agent served by agentgen-runtime (as the image runs it) against a real PostgreSQL: runs, state,
thread isolation, the protective status codes (401, 413, 422, 429) and the run timeout."""

from __future__ import annotations

from pathlib import Path

import pytest
from agentgen_runtime.app import create_app
from agentgen_runtime.config import load_config
from agentgen_runtime.settings import Settings
from fastapi.testclient import TestClient

from support_agent import graph
from support_agent.settings import get_settings

HELLO = {"messages": [{"role": "user", "content": "hello"}]}
LANGGRAPH_JSON = Path(__file__).resolve().parents[1] / "langgraph.json"
USES_REDIS = False  # the dev scale preset shares rate limits in Redis


@pytest.fixture
def make_client(database_url, redis_url):
    clients = []

    def make(**overrides) -> TestClient:
        # Redis where the scale preset uses it and a server is at hand; else in-process rate limits.
        uses_redis = USES_REDIS and redis_url is not None
        redis = {"redis_enabled": True, "redis_url": redis_url} if uses_redis else {"redis_enabled": False}
        values = {"database_url": database_url, "api_keys": "key-a,key-b", **redis, **overrides}
        settings = Settings(_secrets_dir=None, _env_file=None, **values)
        client = TestClient(create_app(settings, load_config(LANGGRAPH_JSON)),
                            headers={"X-API-Key": "key-a"})
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def test_health_ready_and_metrics(make_client):
    from agentgen_runtime.observability import metrics_response

    client = make_client()
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["checks"]["postgres"] == "ok"
    # metrics are served on their own port (METRICS_PORT), never on the API's
    assert client.get("/metrics").status_code in (401, 404)
    assert b"agent_http_requests_total" in metrics_response()[0]


def test_a_thread_keeps_its_conversation(make_client):
    client = make_client()
    thread = client.post("/threads", json={}).json()["thread_id"]
    for text in ("one", "two"):
        run = client.post(f"/threads/{thread}/runs/wait",
                          json={"assistant_id": "agent",
                                "input": {"messages": [{"role": "user", "content": text}]}})
        assert run.status_code == 200, run.text
    state = client.get(f"/threads/{thread}/state").json()
    assert [m["content"] for m in state["values"]["messages"]] == ["one", "Echo: one", "two", "Echo: two"]


def test_threads_are_isolated_between_keys(make_client):
    client = make_client()
    thread = client.post("/threads", json={}).json()["thread_id"]
    other = {"X-API-Key": "key-b"}
    assert client.get(f"/threads/{thread}/state", headers=other).status_code == 404
    assert client.post(f"/threads/{thread}/runs/wait", headers=other,
                       json={"assistant_id": "agent", "input": HELLO}).status_code == 404


def test_approval_graph_pauses_and_resumes(make_client):
    client = make_client()
    thread = client.post("/threads", json={}).json()["thread_id"]
    paused = client.post(f"/threads/{thread}/runs/wait", json={"assistant_id": "approval", "input": HELLO})
    assert paused.json()["__interrupt__"][0]["value"]["draft"] == "Echo: hello"
    resumed = client.post(f"/threads/{thread}/runs/wait",
                          json={"assistant_id": "approval", "command": {"resume": "yes"}})
    assert [m["content"] for m in resumed.json()["messages"]] == ["hello", "Echo: hello"]


def test_protective_status_codes(make_client):
    client = make_client(max_request_bytes=2048)
    assert client.post("/threads", json={}, headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.post("/threads", content=b"x" * 4096,
                       headers={"content-type": "application/json"}).status_code == 413
    missing = client.post("/runs/wait", json={"input": HELLO})
    assert missing.status_code == 422 and "assistant_id" in missing.json()["message"]
    unknown = client.post("/runs/wait", json={"assistant_id": "agent", "input": HELLO, "webhook": "x"})
    assert unknown.status_code == 422 and "webhook" in unknown.json()["message"]
    assert set(unknown.json()) == {"error", "message", "request_id"}


def test_rate_limit_per_key(make_client):
    # keys of their own: with Redis, a minute's counts are shared by every client of that key
    client = make_client(rate_limit_per_minute=3, api_keys="key-c,key-d")
    limited = {"X-API-Key": "key-c"}
    codes = [client.post("/threads", json={}, headers=limited).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    retry = client.post("/threads", json={}, headers=limited)
    assert retry.status_code == 429 and 1 <= int(retry.headers["retry-after"]) <= 60
    assert client.post("/threads", json={}, headers={"X-API-Key": "key-d"}).status_code == 200


def test_slow_runs_time_out(make_client, monkeypatch):
    monkeypatch.setenv("LLM_FAKE_LATENCY_SECONDS", "2")  # the graph's model reads the environment
    graph.chat_model.cache_clear()
    get_settings.cache_clear()
    client = make_client(run_timeout_seconds=0.2)
    # As on LangGraph Platform: `wait` answers once the run exists; the body carries the error.
    answer = client.post("/runs/wait", json={"assistant_id": "agent", "input": HELLO})
    assert answer.status_code == 200 and answer.json()["__error__"]["error"] == "TimeoutError"
