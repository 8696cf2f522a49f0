"""Credentials never enter a run, a checkpoint, a webhook or a log line, whatever langgraph.json's
header patterns say: the configured API key header, authorization, cookie, proxy-authorization and
every header a custom auth handler reads (credentials.py: one rule, one place). Real processes, the
real SDK, a webhook receiver verifying signatures."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from agentgen_runtime.auth.credentials import Credentials
from langgraph_sdk import get_client

from ..servers import output, wait_until
from .helpers import WEATHER, runtime_server
from .test_webhooks import SECRET, Receiver, delivery

pytestmark = pytest.mark.slow
GRAPHS = {"weather": f"{WEATHER}/src/weather_agent/graph.py:graph",
          "whoami": f"{WEATHER}/src/weather_agent/whoami.py:graph"}
EVERY_HEADER = {"configurable_headers": {"include": ["*"]}, "logging_headers": {"include": ["*"]}}
SECRETS = ("k3y-in-a-custom-header", "c00kie-value", "cHJveHktc2VjcmV0", "s3ssion-token",
           "d3vice-secret")


def _config(tmp_path: Path, **extra: Any) -> str:
    config = {"dependencies": [str(WEATHER)], "graphs": GRAPHS, "http": EVERY_HEADER,
              "webhooks": {"url": {"disable_loopback": False}}, **extra}
    path = tmp_path / f"langgraph.{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps(config))
    return str(path)


def _everything_kept(server, database: str, client_headers: dict[str, str],
                     receiver: Receiver) -> tuple[dict[str, Any], str]:
    """A run through the SDK with `client_headers` and a webhook: the run's configurable as the
    graph saw it, and everything the server kept or sent of it (run row, list, history, webhook
    body, log) as one text."""
    async def run() -> tuple[dict[str, Any], list[Any]]:
        client = get_client(url=server.base, api_key=None, headers=client_headers)
        thread = await client.threads.create()
        tid = thread["thread_id"]
        seen = await client.runs.wait(tid, "whoami", input={"question": "?"},
                                      webhook=f"{receiver.url}/hook")
        runs = await client.runs.list(tid)
        one = await client.runs.get(tid, runs[0]["run_id"])
        history = await client.threads.get_history(tid)
        state = await client.threads.get_state(tid)
        return seen, [runs, one, history, state, runs[0]["run_id"]]

    seen, kept = asyncio.run(run())
    run_id = kept[-1]
    wait_until(lambda: (delivery(database, run_id) or {}).get("state") == "delivered", timeout=30,
               what="the webhook delivered")
    sent = [call["payload"] for call in receiver.calls]
    assert sent and "unverified" not in sent[0], sent
    return seen, json.dumps([kept, sent]) + output(server.proc)


def test_the_key_header_cookies_and_proxy_credentials_stay_out_of_everything(database, tmp_path):
    """API_KEY_HEADER=x-my-key and `configurable_headers: {include: ["*"]}`: the key, the cookie and
    Proxy-Authorization reach neither the run (row, list, history, state), the webhook body nor
    the access log; an ordinary header does."""
    with Receiver().running() as receiver, runtime_server(
            database, LANGGRAPH_CONFIG=_config(tmp_path), API_KEY_HEADER="x-my-key",
            API_KEYS="k3y-in-a-custom-header", WEBHOOK_SECRET=SECRET, LOG_LEVEL="INFO") as server:
        seen, everything = _everything_kept(server, database, {
            "x-my-key": "k3y-in-a-custom-header", "Cookie": "sid=c00kie-value",
            "Proxy-Authorization": "Basic cHJveHktc2VjcmV0", "X-Visible": "yes"}, receiver)
        assert seen["headers"].get("x-visible") == "yes", seen
        assert "x-visible" in everything and '"x-visible": "yes"' in everything  # logged, kept
        for secret in SECRETS[:3]:
            assert secret not in everything, secret


HANDLER = '''
from langgraph_sdk import Auth

auth = Auth()


@auth.authenticate
async def authenticate(headers: dict, request) -> str:
    token = headers.get(b"x-session-token")
    device = request.headers.get("x-device-secret")
    if token != b"s3ssion-token" or device != "d3vice-secret":
        raise Auth.exceptions.HTTPException(status_code=401, detail="no session")
    return "alice"
'''


def test_the_headers_a_custom_auth_handler_reads_stay_out_of_everything(database, tmp_path):
    """A handler that reads its own headers (by the `headers` dict and through `request`): those
    are credentials too, from the first request on."""
    (tmp_path / "session_auth.py").write_text(HANDLER)
    config = _config(tmp_path, auth={"path": f"{tmp_path}/session_auth.py:auth"})
    with Receiver().running() as receiver, runtime_server(
            database, LANGGRAPH_CONFIG=config, API_KEYS="", WEBHOOK_SECRET=SECRET,
            LOG_LEVEL="INFO") as server:
        seen, everything = _everything_kept(server, database, {
            "X-Session-Token": "s3ssion-token", "X-Device-Secret": "d3vice-secret",
            "X-Visible": "yes"}, receiver)
        assert seen["headers"].get("x-visible") == "yes", seen
        for secret in SECRETS[3:]:
            assert secret not in everything, secret
        # what the server reads after the handler (content-type, ...) is not taken for a credential
        assert '"content-type": "application/json"' in everything


def test_the_rule_is_one_place():
    credentials = Credentials("X-My-Key")
    assert all(credentials.secret(n) for n in ("x-my-key", "Authorization", "cookie",
                                                "proxy-authorization", "x-api-key"))
    assert not credentials.secret("x-visible")
    seen = credentials.recording_dict([(b"x-token", b"t")])
    assert seen.get(b"x-token") == b"t" and credentials.secret("x-token")
