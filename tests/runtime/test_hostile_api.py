"""Client mistakes are 4xx JSON answers naming the field, never a 500 (nor a row stored for a
refused request); configuration mistakes are one line at start-up, never a traceback or a server
that silently refuses everyone."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import WEATHER, runtime_env, runtime_server

pytestmark = pytest.mark.slow
ERROR_KEYS = {"error", "message", "request_id"}


@pytest.fixture(scope="module")
def server(database):
    with runtime_server(database) as server:
        yield server


def _raw(server, method: str, path: str, body: bytes | None, headers: dict[str, str] | None = None,
         chunked: bool = False) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, path)
        for name, value in {"content-type": "application/json", "X-API-Key": "key-one",
                            **(headers or {})}.items():
            conn.putheader(name, value)
        if chunked:
            conn.putheader("transfer-encoding", "chunked")
        elif body is not None:
            conn.putheader("content-length", str(len(body)))
        conn.endheaders()
        if body is not None and chunked:
            for start in range(0, len(body), 65536):
                piece = body[start:start + 65536]
                conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            conn.send(b"0\r\n\r\n")
        elif body is not None:
            conn.send(body)
        response = conn.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def _nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


CASES = [
    # (method, path, raw JSON body, expected status, what the message must name)
    ("POST", "/threads", b'{"metadata": {"k": "a\\u0000b"}}', 422, "NUL"),
    ("POST", "/threads", b'{"thread_id": "t\\u0000x"}', 422, "NUL"),
    ("POST", "/threads", b'{"metadata": {"k": NaN}}', 422, "finite"),
    ("POST", "/threads", b'{"metadata": {"k": Infinity}}', 422, "finite"),
    ("POST", "/threads", json.dumps({"metadata": _nested(500)}).encode(), 422, "nested deeper"),
    ("POST", "/threads/search", b'{"offset": 9223372036854775808}', 422, "offset"),
    ("POST", "/threads/search", b'{"metadata": {"k": "\\u0000"}}', 422, "NUL"),
    ("POST", "/assistants/search", b'{"offset": 9223372036854775807}', 422, "offset"),
    ("GET", "/threads/abc%00def", None, 422, "NUL"),
    ("GET", "/threads/{tid}/history?limit=0", None, 422, "limit"),
    ("GET", "/threads/{tid}/runs?offset=9223372036854775808", None, 422, "offset"),
    ("GET", "/threads/{tid}/runs?limit=-1", None, 422, "limit"),
    ("POST", "/threads/{tid}/runs/wait",
     b'{"assistant_id": "weather", "input": {"question": "q\\u0000"}}', 422, "NUL"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "needle"), CASES)
def test_client_mistakes_are_4xx_json(server, method, path, body, status, needle):
    tid = server.call("POST", "/threads", {})[1]["thread_id"]
    got, raw, _ = _raw(server, method, path.format(tid=tid), body)
    answer = json.loads(raw)
    assert got == status, (got, answer)
    assert set(answer) == ERROR_KEYS and needle in answer["message"], answer


def test_a_refused_thread_is_not_stored_and_search_keeps_working(server):
    _raw(server, "POST", "/threads",
         json.dumps({"thread_id": "deep-one", "metadata": _nested(500)}).encode())
    assert server.call("GET", "/threads/deep-one")[0] == 404
    status, found, _ = server.call("POST", "/threads/search", {"limit": 1000})
    assert status == 200 and isinstance(found, list)


def test_request_ids_are_sanitised_and_bodies_over_the_limit_are_413(server):
    status, raw, headers = _raw(server, "GET", "/threads/none", None,
                                headers={"X-Request-ID": "caf\xe9-bad"})  # not UTF-8
    assert status == 404 and json.loads(raw)["error"] == "not_found"
    assert headers["x-request-id"].isalnum()
    status, _, headers = _raw(server, "GET", "/threads/none", None, headers={"X-Request-ID": "abc-1.2"})
    assert headers["x-request-id"] == "abc-1.2"
    big = json.dumps({"metadata": {"k": "x" * (2 * 1024 * 1024)}}).encode()
    for chunked in (False, True):
        status, raw, _ = _raw(server, "POST", "/threads", big, chunked=chunked)
        assert status == 413, (chunked, status, raw[:200])
        assert json.loads(raw)["error"] == "payload_too_large"


def _start(database: str, tmp_path: Path, config: dict | None = None,
           secrets: dict[str, bytes] | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """The server's start-up with a bad configuration: it must exit at once."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(exist_ok=True)
    for name, content in (secrets or {}).items():
        (secrets_dir / name).write_bytes(content)
    base = runtime_env(database, PORT="1", SECRETS_DIR=str(secrets_dir), **env)
    if config is not None:
        path = tmp_path / "langgraph.json"
        path.write_text(config if isinstance(config, str) else json.dumps(config))
        base["LANGGRAPH_CONFIG"] = str(path)
    return subprocess.run([sys.executable, "-m", "agentgen_runtime"], cwd=WEATHER,
                          env={**os.environ, **base}, capture_output=True, text=True, timeout=60)


WEATHER_CONFIG = json.loads((WEATHER / "langgraph.json").read_text())


@pytest.mark.parametrize(("config", "needle"), [
    ({**WEATHER_CONFIG, "auth": {"path": "./no_such_auth.py:auth"}}, "auth.path"),
    ({**WEATHER_CONFIG, "auth": {"path": "./src/weather_agent/auth.py:auth", "cache": {"ttl_seconds": 60}}},
     "auth.cache"),
    ({**WEATHER_CONFIG, "auth": {"path": "./src/weather_agent/auth.py:auth", "disable_studio": True}},
     "auth.disable_studio"),
    ({**WEATHER_CONFIG, "http": {"app": WEATHER_CONFIG["http"]["app"],
                                 "configurable_headers": {"include": "x-user-id"}}},
     "http.configurable_headers.include"),
    ({**WEATHER_CONFIG, "http": {"middleware_order": "auth_last"}}, "http.middleware_order"),
    ({**WEATHER_CONFIG, "http": {"logging_headers": {"include": ["x-*"], "only": []}}},
     "http.logging_headers.only"),
    ({**WEATHER_CONFIG, "http": {"cors": {"allow_origin": ["*"]}}}, "http.cors.allow_origin"),
    ({**WEATHER_CONFIG, "http": {"mount_prefix": "api/"}}, "http.mount_prefix"),
    ({**WEATHER_CONFIG, "http": {"disable_runs": "yes"}}, "http.disable_runs"),
    ({**WEATHER_CONFIG, "webhooks": {"retries": 3}}, "webhooks.retries"),
    ({**WEATHER_CONFIG, "graphs": {"shell": "os:system"}}, "graphs.shell (os:system)"),
    ('{"graphs": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}", "langgraph.json"),
])
def test_configuration_the_runtime_cannot_serve_refuses_start_up_in_one_line(database, tmp_path,
                                                                               config, needle):
    started = _start(database, tmp_path, config=config)
    assert started.returncode == 1
    lines = [line for line in started.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in started.stderr, started.stderr


def test_an_api_keys_file_with_one_key_per_line_is_read_as_several_keys(database, tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "api_keys").write_text("line-key-one\nline-key-two\n")
    with runtime_server(database, SECRETS_DIR=str(tmp_path / "secrets"), API_KEYS="") as server:
        for key in ("line-key-one", "line-key-two"):
            assert server.call("POST", "/threads", {}, key=key)[0] == 200
        assert server.call("POST", "/threads", {}, key="line-key-one,line-key-two")[0] == 401


def test_a_non_utf8_api_keys_file_is_one_line(database, tmp_path):
    started = _start(database, tmp_path, secrets={"api_keys": b"\xff\xfe key"}, API_KEYS="")
    assert started.returncode == 1
    lines = [line for line in started.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "api_keys" in lines[0] and "UTF-8" in lines[0], started.stderr


def test_docs_are_closed_by_default_and_failed_keys_are_limited_per_address(database):
    with runtime_server(database, AUTH_FAILURES_PER_MINUTE="3") as server:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert server.call("GET", path)[0] == 404, path
        statuses = [server.call("GET", "/threads/x", key="wrong-key")[0] for _ in range(5)]
        assert statuses == [401, 401, 401, 429, 429], statuses
        status, _, headers = server.call("GET", "/threads/x", key=None)
        assert status == 429 and int(headers["retry-after"]) >= 1
        # a valid key from the same address still passes: a guesser cannot lock the app out
        assert server.call("POST", "/threads", {}, key="key-one")[0] == 200
    with runtime_server(database, DOCS_ENABLED="true") as server:
        assert server.call("GET", "/openapi.json")[0] == 200


def test_the_metrics_port_misconfigured_or_taken_is_one_line(database, tmp_path):
    same = _start(database, tmp_path, METRICS_PORT="1")  # _start serves the API on port 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = _start(database, tmp_path, METRICS_PORT=str(taken.getsockname()[1]))
    for started in (same, busy):
        assert started.returncode == 1
        lines = [line for line in started.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "metrics_port" in lines[0] and "Traceback" not in started.stderr, \
            started.stderr


def test_metrics_are_served_on_their_own_port_only(database):
    with runtime_server(database) as server:
        assert server.call("POST", "/threads", {})[0] == 200
        for key in (None, "key-one"):  # not on the API's port, with or without a key
            assert server.call("GET", "/metrics", key=key)[0] == 404
        assert 'agent_http_requests_total{method="POST",route="/threads",status="200"}' in \
            server.metrics()


def test_a_webhook_secret_that_is_not_one_is_one_line(database, tmp_path):
    started = _start(database, tmp_path, WEBHOOK_SECRET="whsec_not*base64*at*all")
    assert started.returncode == 1
    lines = [line for line in started.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "WEBHOOK_SECRET" in lines[0] and "at*all" not in lines[0], started.stderr


HOSTILE_BODIES = {
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "deep object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "huge": b'{"metadata": {"k": "' + b"x" * (2 * 1024 * 1024) + b'"}}',
    "binary": b"\xff\xfe\x00\x01\x80garbage",
    "NaN": b'{"assistant_id": "weather", "metadata": {"k": NaN}, "limit": Infinity}',
    "array": b"[]",
    "string": b'"x"',
    "number": b"1e308",
    "null": b"null",
    "wrong types": b'{"assistant_id": 5, "limit": "x", "metadata": [], "input": 1, "namespace": 3, '
                   b'"schedule": {}, "thread_id": [], "config": "c", "ttl": 1e308}',
}


def test_every_route_of_the_openapi_document_answers_hostile_bodies_with_4xx(database):
    """Every route that takes a body (from the server's own OpenAPI document: a new route is
    walked too) gets deep, huge, binary, NaN and wrong-type bodies: no 5xx, every refusal the API's
    JSON error, and no unhandled exception in the server's log."""
    from ..servers import output

    with runtime_server(database, DOCS_ENABLED="true", LOG_LEVEL="INFO",
                        RATE_LIMIT_PER_MINUTE="1000000") as server:
        document = server.call("GET", "/openapi.json")[1]
        tid = server.call("POST", "/threads", {})[1]["thread_id"]
        walked = 0
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                if "requestBody" not in operation:
                    continue
                concrete = path.replace("{thread_id}", tid)
                for name in ("run_id", "assistant_id", "cron_id", "checkpoint_id"):
                    concrete = concrete.replace("{" + name + "}", "00000000-0000-4000-8000-000000000000")
                for what, body in HOSTILE_BODIES.items():
                    status, raw, _ = _raw(server, method.upper(), concrete, body)
                    assert status < 500, (method, path, what, status, raw[:300])
                    answer = json.loads(raw)
                    if status >= 400:  # (an empty batch is a batch)
                        assert set(answer) == ERROR_KEYS, (method, path, what, answer)
                    walked += 1
        assert walked > 200, walked  # (every body-taking route: runs, threads, store, crons, ...)
        log = output(server.proc)
        assert "Traceback" not in log and '"level": "ERROR"' not in log, log[-3000:]
