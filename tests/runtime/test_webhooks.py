"""Webhooks: the URL policy (library), and calls by real runtime processes to a receiver written
here that verifies each signature with the Standard Webhooks library: delivered with the run's
payload, retried after a 500, sent for a cron's runs; refused at creation (422) and at delivery
(recorded on the delivery's row) where the policy forbids."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
from agentgen_runtime.config import ConfigError
from agentgen_runtime.surfaces.webhooks import Policy, Refused
from langgraph_sdk import get_client
from standardwebhooks import Webhook

from ..servers import wait_until
from .helpers import WEATHER, runtime_server

SECRET = "whsec_" + base64.b64encode(b"a test secret of thirty-two byte").decode()
QUESTION = {"question": "rain?"}


# --- the policy ----------------------------------------------------------------------------------
def resolving(monkeypatch, *answers: str) -> None:
    """Name resolution that answers each call with the next address (a DNS rebinding)."""
    queue = list(answers)

    async def getaddrinfo(self, host, port, **_):
        address = queue.pop(0) if len(queue) > 1 else queue[0]
        return [(None, None, None, "", (address, port))]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize(("url", "reason"), [
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://[fe80::1]/x", "link-local"),
    ("http://10.1.2.3/hook", "private"),
    ("http://192.168.0.10:8080/hook", "private"),
    ("http://127.0.0.1:9000/hook", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://localhost:9000/hook", "loopback"),
    ("http://0.0.0.0/hook", "unicast"),
    ("ftp://example.com/hook", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("/threads", "relative"),
])
def test_the_default_policy_refuses_what_is_not_public_http(url, reason):
    with pytest.raises(Refused, match=reason):
        asyncio.run(Policy().resolve(url))


def test_a_name_is_checked_by_what_it_resolves_to_each_time(monkeypatch):
    resolving(monkeypatch, "93.184.216.34", "127.0.0.1")
    policy = Policy()
    assert asyncio.run(policy.resolve("https://hooks.example.com/x")) == (
        "https", "hooks.example.com", "93.184.216.34")
    with pytest.raises(Refused, match="resolves to 127.0.0.1, which is loopback"):
        asyncio.run(policy.resolve("https://hooks.example.com/x"))  # rebound: refused


def test_the_policy_from_langgraph_json(monkeypatch):
    resolving(monkeypatch, "93.184.216.34")
    monkeypatch.setenv("LG_WEBHOOK_TOKEN", "t0k")
    policy = Policy.from_config({
        "url": {"require_https": True, "allowed_domains": ["hooks.example.com", "*.corp.example"],
                "allowed_ports": [443, 8443], "max_url_length": 60},
        "headers": {"Authorization": "Bearer ${{ env.LG_WEBHOOK_TOKEN }}"}})
    assert policy.headers == {"Authorization": "Bearer t0k"}
    for url in ("https://hooks.example.com/x", "https://a.corp.example:8443/x"):
        asyncio.run(policy.resolve(url))
    for url, reason in (("http://hooks.example.com/x", "https"),
                        ("https://corp.example/x", "allowed_domains"),
                        ("https://evil.com/x", "allowed_domains"),
                        ("https://hooks.example.com:444/x", "allowed_ports"),
                        ("https://hooks.example.com/" + "x" * 60, "longer")):
        with pytest.raises(Refused, match=reason):
            asyncio.run(policy.resolve(url))
    private = Policy.from_config({"url": {"disable_private_ips": False}})
    resolving(monkeypatch, "10.0.0.7")
    asyncio.run(private.resolve("http://hooks.internal/x"))
    for config, key in (({"url": {"allow_all": True}}, "webhooks.url.allow_all"),
                        ({"retries": 3}, "webhooks.retries"),
                        ({"headers": {"X": "${{ env.HOME }}"}}, "webhooks.headers.X"),
                        ({"allowed_fields": ["run_id", "secret"]}, "webhooks.allowed_fields")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            Policy.from_config(config)


# --- calls by runtime processes ------------------------------------------------------------------
class Receiver:
    """An HTTP receiver on loopback that verifies every call's signature; answers the first
    `failures` calls with 500."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[dict] = []
        self.failures = failures
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = Webhook(SECRET).verify(body, headers)
                except Exception as exc:  # noqa: BLE001 - recorded as the receiver saw it
                    payload = {"unverified": str(exc)}
                receiver.calls.append({"path": self.path, "headers": headers, "payload": payload})
                self.send_response(500 if len(receiver.calls) <= receiver.failures else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    @contextlib.contextmanager
    def running(self) -> Iterator[Receiver]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


def delivery(database: str, run_id: str) -> dict | None:
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT state, attempts, last_status, last_error FROM agent_webhooks "
                           "WHERE run_id = %s", (run_id,)).fetchone()
    return None if row is None else dict(zip(("state", "attempts", "last_status", "last_error"), row,
                                              strict=True))


WEBHOOK_SERVER = {"WEBHOOK_SECRET": SECRET, "LANGGRAPH_CONFIG": str(WEATHER / "langgraph.webhooks.json"),
                  "CRON_ALLOW_SECONDS": "true",
                  "LG_WEBHOOK_TEAM": "blue", "RUN_LEASE_SECONDS": "3"}


@pytest.mark.slow
def test_a_run_ends_and_its_webhook_is_called_signed_and_retried(database):
    """Two processes; a run created through one with a webhook: the receiver (verifying each call
    with the Standard Webhooks library) answers 500, then 200; the call is repeated with the same
    id, carries the run's payload and the configured header, and is recorded as delivered. A cron's
    runs call its webhook too."""
    with Receiver(failures=1).running() as receiver, \
            runtime_server(database, **WEBHOOK_SERVER) as a, \
            runtime_server(database, **WEBHOOK_SERVER) as b:
        async def run():
            c = get_client(url=a.base, api_key="key-one")
            thread = await c.threads.create()
            return await c.runs.create(thread["thread_id"], "weather", input=QUESTION,
                                       webhook=f"{receiver.url}/hooks/run", metadata={"n": 1})

        run = asyncio.run(run())
        wait_until(lambda: (delivery(database, run["run_id"]) or {}).get("state") == "delivered",
                   timeout=30, what="the webhook delivered")
        assert delivery(database, run["run_id"])["attempts"] == 2
        assert delivery(database, run["run_id"])["last_status"] == 200
        assert len(receiver.calls) == 2
        first, second = receiver.calls
        assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == run["run_id"]
        payload = second["payload"]
        assert "unverified" not in payload, payload
        assert payload["run_id"] == run["run_id"] and payload["status"] == "success"
        assert payload["values"]["answers"] and payload["metadata"]["n"] == 1
        assert {"run_started_at", "run_ended_at", "webhook_sent_at", "kwargs", "error"} <= set(payload)
        assert second["headers"]["x-team"] == "ops-blue" and second["path"] == "/hooks/run"

        status, cron, _ = a.call("POST", "/runs/crons", {
            "assistant_id": "weather", "schedule": "* * * * * *", "input": QUESTION,
            "webhook": f"http://localhost:{receiver.server.server_port}/hooks/cron"})
        assert status == 200, cron
        wait_until(lambda: any(c["path"] == "/hooks/cron" for c in receiver.calls), timeout=20,
                   what="a cron run's webhook")
        a.call("DELETE", f"/runs/crons/{cron['cron_id']}")
        call = next(c for c in receiver.calls if c["path"] == "/hooks/cron")
        assert call["payload"]["kwargs"]["config"]["configurable"]["cron_id"] == cron["cron_id"]
        # sent to the address that was checked, under the URL's own name
        assert call["headers"]["host"] == f"localhost:{receiver.server.server_port}"
        metrics = a.metrics() + b.metrics()  # (either process may have made either call)
        assert 'agent_webhook_deliveries_total{outcome="retried"} 1.0' in metrics
        assert 'agent_webhook_deliveries_total{outcome="delivered"}' in metrics


@pytest.mark.slow
def test_webhooks_the_policy_forbids_are_refused_at_creation_and_at_delivery(database):
    """The default policy: loopback, private, link-local (cloud metadata) and names resolving to
    loopback are a 422 naming the webhook; a delivery whose URL is refused when it is due (its
    name resolved elsewhere since) is recorded as refused, never sent. Without WEBHOOK_SECRET
    every webhook is a 422 naming it."""
    with Receiver().running() as receiver, runtime_server(database, WEBHOOK_SECRET=SECRET) as server:
        for url in (f"{receiver.url}/x", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.8/x",
                    f"http://localhost:{receiver.server.server_port}/x", "http://[::1]/x",
                    "gopher://example.com/x"):
            for path, body in (("/runs/wait", {"assistant_id": "weather", "input": QUESTION}),
                               ("/runs/crons", {"assistant_id": "weather", "schedule": "0 0 * * *"}),
                               ("/runs/batch", [{"assistant_id": "weather", "input": QUESTION}])):
                body = [{**body[0], "webhook": url}] if isinstance(body, list) else {**body, "webhook": url}
                status, answer, _ = server.call("POST", path, body)
                assert status == 422 and "webhook: refused" in answer["message"], (url, path, answer)
        # a delivery due for a URL refused now (as a run's end writes it): recorded, not sent
        with psycopg.connect(database) as conn:
            conn.execute("INSERT INTO agent_webhooks (run_id, url, payload) VALUES "
                         "('r-rebound', %s, '{}'), ('r-metadata', 'http://169.254.169.254/x', '{}')",
                         (f"http://localhost:{receiver.server.server_port}/x",))
        wait_until(lambda: all((delivery(database, r) or {}).get("state") == "refused"
                               for r in ("r-rebound", "r-metadata")), timeout=15, what="refusals")
        assert "loopback" in delivery(database, "r-rebound")["last_error"]
        assert "link-local" in delivery(database, "r-metadata")["last_error"]
        assert receiver.calls == []
    with runtime_server(database) as unsigned:
        status, answer, _ = unsigned.call("POST", "/runs/wait", {
            "assistant_id": "weather", "input": QUESTION, "webhook": "https://example.com/x"})
        assert status == 422 and "WEBHOOK_SECRET" in answer["message"], answer
