"""Every input has a bound, and one caller cannot exhaust the server or reach past its policy:
crons (sub-minute schedules, crons per identity, ticks against the rate limit), the WebSocket (a
frame held to a body's limit, deep, binary and hostile frames, subscriptions per socket, another
identity's thread), store TTLs, webhook addresses (every embedded IPv4 form) and deliveries left
to a process that can make them, and an unauthenticated server kept on loopback. Real processes on
a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import psycopg
import pytest
from agentgen_runtime.surfaces.webhooks import Policy, Refused

from ..servers import output, wait_until
from .helpers import WEATHER, runtime_server
from .test_webhooks import SECRET, Receiver, delivery

QUESTION = {"question": "rain?"}


@pytest.mark.parametrize(("address", "carried"), [
    ("2002:7f00:1::1", "127.0.0.1"),  # 6to4
    ("64:ff9b::7f00:1", "127.0.0.1"),  # NAT64, well-known prefix
    ("64:ff9b:1::a00:1", "10.0.0.1"),  # NAT64, local-use prefix
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1"),  # Teredo (the client, inverted)
    ("::ffff:169.254.169.254", "169.254.169.254"),  # IPv4-mapped
    ("::10.0.0.1", "10.0.0.1"),  # IPv4-compatible
])
def test_webhook_addresses_are_judged_by_the_ipv4_they_carry(address, carried):
    with pytest.raises(Refused, match=f"carries {carried}"):
        asyncio.run(Policy().resolve(f"http://[{address}]/hook"))
    Policy().check_address("hooks.example.com", "2002:5db8:d822::1")  # 6to4 of a public address


@pytest.mark.slow
def test_a_process_that_cannot_deliver_leaves_the_webhook_to_one_that_can(database):
    """Runs with a loopback webhook through a process whose policy allows it, beside a process
    without WEBHOOK_SECRET and one with the default (stricter) policy: every call is delivered by
    the one that can, none marked refused."""
    permissive = {"WEBHOOK_SECRET": SECRET, "LG_WEBHOOK_TEAM": "blue",
                  "LANGGRAPH_CONFIG": str(WEATHER / "langgraph.webhooks.json")}
    with Receiver().running() as receiver, runtime_server(database, **permissive) as able, \
            runtime_server(database) as unsigned, runtime_server(database, WEBHOOK_SECRET=SECRET) as strict:
        runs = [able.call("POST", "/runs", {"assistant_id": "weather", "input": QUESTION,
                                            "webhook": f"{receiver.url}/hook/{i}"})[1]["run_id"]
                for i in range(6)]
        wait_until(lambda: all((delivery(database, r) or {}).get("state") in ("delivered", "refused")
                               for r in runs), timeout=60, what="the deliveries")
        states = {r: delivery(database, r) for r in runs}
        assert all(s["state"] == "delivered" for s in states.values()), states
        assert sorted(c["path"] for c in receiver.calls) == sorted(f"/hook/{i}" for i in range(6))
        assert unsigned.proc.poll() is None and strict.proc.poll() is None


@pytest.mark.slow
def test_cron_bounds(database):
    """A sub-minute schedule is refused by default (its sixth field: seconds); an identity holds
    at most MAX_CRONS_PER_OWNER crons (another identity is not limited by it); a cron's ticks count
    against its creator's rate limit: beyond it, ticks are recorded as refused, not run."""
    with runtime_server(database, MAX_CRONS_PER_OWNER="2") as server:
        status, answer, _ = server.call("POST", "/runs/crons", {
            "assistant_id": "weather", "schedule": "* * * * * *", "input": QUESTION})
        assert status == 422 and "CRON_ALLOW_SECONDS" in answer["message"], answer
        for _ in range(2):  # once a minute at second 30: not sub-minute
            assert server.call("POST", "/runs/crons", {"assistant_id": "weather",
                                                       "schedule": "* * * * * 30"})[0] == 200
        status, answer, _ = server.call("POST", "/runs/crons", {"assistant_id": "weather",
                                                                "schedule": "0 0 * * *"})
        assert status == 422 and "MAX_CRONS_PER_OWNER=2" in answer["message"], answer
        assert server.call("POST", "/runs/crons", {"assistant_id": "weather", "schedule": "0 0 * * *"},
                           key="key-two")[0] == 200
    with runtime_server(database, CRON_ALLOW_SECONDS="true", RATE_LIMIT_PER_MINUTE="4") as server:
        tid = server.call("POST", "/threads", {}, key="key-two")[1]["thread_id"]
        status, cron, _ = server.call("POST", f"/threads/{tid}/runs/crons", {
            "assistant_id": "weather", "schedule": "* * * * * *", "input": QUESTION}, key="key-two")
        assert status == 200, cron
        time.sleep(6)  # (the cron is left: a request now would be refused by the same limit)
        with psycopg.connect(database) as conn:
            ran = conn.execute("SELECT count(*) FROM agent_runs WHERE thread_id = %s",
                               (tid,)).fetchone()[0]
            ticks, error = conn.execute("SELECT runs, last_error FROM agent_crons WHERE cron_id = %s",
                                        (cron["cron_id"],)).fetchone()
        assert 1 <= ran <= 2 and ticks >= 4, (ran, ticks)  # 4 a minute: thread, cron, two ticks
        assert "rate limit" in (error or "").lower(), error


@pytest.mark.slow
def test_store_ttl_is_bounded(database):
    with runtime_server(database) as server:
        status, answer, _ = server.call("PUT", "/store/items", {
            "namespace": ["a"], "key": "k", "value": {"v": 1}, "ttl": 1e308})
        assert status == 422 and "ttl" in answer["message"], answer


async def _frames(url: str, key: str, send: list[Any], expect_close: bool = True) -> tuple[list[Any], Any]:
    """Send each frame (str, bytes) on a new socket; what came back and how it closed."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    got: list[Any] = []
    async with connect(url, additional_headers={"X-API-Key": key}, max_size=None) as connection:
        try:
            for frame in send:
                await connection.send(frame)
            while True:
                got.append(json.loads(await asyncio.wait_for(connection.recv(), 10)))
                if not expect_close and len(got) >= len(send):
                    break
        except ConnectionClosed:
            pass
        return got, connection.close_code


@pytest.mark.slow
def test_websocket_frames_are_bounded_and_hostile_ones_end_the_socket_cleanly(database):
    with runtime_server(database, LOG_LEVEL="INFO") as server:
        tid = server.call("POST", "/threads", {})[1]["thread_id"]
        url = server.base.replace("http://", "ws://") + f"/threads/{tid}/stream/events"
        huge = json.dumps({"id": 1, "method": "run.start", "params": {
            "assistant_id": "weather", "input": {"question": "x" * (2 * 1024 * 1024)}}})
        _, code = asyncio.run(_frames(url, "key-one", [huge]))
        assert code == 1009, code  # held to MAX_REQUEST_BYTES, as HTTP answers 413
        deep = "[" * 100_000 + "]" * 100_000
        got, code = asyncio.run(_frames(url, "key-one", [deep]))
        assert code == 1007 and got and got[-1]["type"] == "error", (code, got)
        got, code = asyncio.run(_frames(url, "key-one", ['{"id": 1, "method": "x", "params": NaN}']))
        assert code == 1007, (code, got)
        got, code = asyncio.run(_frames(url, "key-one", [b"\x00\x01binary"]))
        assert code == 1003 and got[-1]["type"] == "error", (code, got)
        # malformed JSON is answered and the socket kept, as langgraph-api does
        got, _ = asyncio.run(_frames(url, "key-one", ["{not json"], expect_close=False))
        assert got[0]["message"] == "Protocol commands must be valid JSON.", got
        subscribe = [json.dumps({"id": i, "method": "subscription.subscribe",
                                 "params": {"channels": ["values"]}}) for i in range(70)]
        got, _ = asyncio.run(_frames(url, "key-one", subscribe, expect_close=False))
        refused = [g for g in got if g["type"] == "error"]
        assert len(got) - len(refused) == 64 and "at most 64" in refused[0]["message"], got[-1]
        # another identity's thread: refused at its first subscription, the socket closed
        got, code = asyncio.run(_frames(url, "key-two", [subscribe[0]]))
        assert code == 1008 and got[-1]["type"] == "error" and tid in got[-1]["message"], (code, got)
        for path in (f"/threads/{tid}/commands", f"/threads/{tid}/stream/events"):
            import http.client

            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            conn.request("POST", path, body=deep, headers={"X-API-Key": "key-one",
                                                            "content-type": "application/json"})
            response = conn.getresponse()
            body = json.loads(response.read())
            conn.close()
            assert response.status == 400 and "nested deeper" in body["message"], (path, body)
        log = output(server.proc)
        assert "Traceback" not in log and "Exception in ASGI" not in log, log[-3000:]


def _listening_on_every_interface(port: int) -> bool:
    """127.0.0.2 reaches a socket bound to 0.0.0.0, not one bound to 127.0.0.1."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.2", port)) == 0


@pytest.mark.slow
def test_an_unauthenticated_server_listens_on_loopback_only(database):
    open_everywhere = {"API_KEYS": "", "AUTH_REQUIRED": "false", "HOST": "0.0.0.0"}  # noqa: S104
    with runtime_server(database, **open_everywhere) as server:
        assert not _listening_on_every_interface(server.port)
        assert "listening on 127.0.0.1 only" in output(server.proc)
    with runtime_server(database, **open_everywhere, UNAUTHENTICATED_REMOTE="true") as server:
        assert _listening_on_every_interface(server.port)
    with runtime_server(database, HOST="0.0.0.0") as server:  # noqa: S104 - with keys
        assert _listening_on_every_interface(server.port)
