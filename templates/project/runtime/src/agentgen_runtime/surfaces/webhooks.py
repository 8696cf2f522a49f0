"""Webhooks: a run (or a cron's run) given a `webhook` URL has it called when the run ends, with
the run's payload as the Platform sends it; signed, retried, recorded, and never sent where the
URL policy forbids.

- **Durable.** A run's end writes its delivery in the same transaction (a trigger on the run's
  status: whatever ends it, its worker, a cancel, the reaper): a process that dies after the run
  ended loses no call. Every process that has `WEBHOOK_SECRET` delivers (rows claimed with `FOR
  UPDATE SKIP LOCKED` and a lease): at least once; receivers deduplicate by `webhook-id` (the run's
  id). A delivery is claimed by a process of the URL policy that accepted it (its fingerprint is
  kept with the run): a process with another (stricter) policy leaves it to one that can, unless
  no such process took it for ORPHAN_SECONDS (a deployment changed the policy: then any process
  decides); a process without the secret claims none.
- **Signed** as Standard Webhooks (standardwebhooks): `webhook-id`, `webhook-timestamp`,
  `webhook-signature: v1,<HMAC-SHA256 of id.timestamp.body>` with `WEBHOOK_SECRET` (`whsec_`
  and base64, as the scheme's libraries expect). Without a secret webhooks are refused (422).
- **Retried** with exponential back-off (2, 4, 8, 16 s ...) on a connection error or any answer
  but 2xx, up to `WEBHOOK_MAX_ATTEMPTS`; each attempt is recorded on the delivery's row
  (`agent_webhooks`: attempts, last status, last error, state) and counted
  (`agent_webhook_deliveries_total{outcome}`).
- **URL policy** (`langgraph.json` `webhooks.url`, the Platform's keys): `require_https`,
  `allowed_domains` (`*.example.com` for subdomains), `allowed_ports`, `max_url_length`,
  `disable_loopback` (default true), `disable_private_ips` (default **true** here: the Platform
  allows private addresses unless told; a webhook into the cluster is one setting away). Link-local
  addresses (169.254.169.254, cloud metadata), unspecified, multicast and reserved addresses and any
  scheme but http(s) are always refused, and relative URLs too (this server does not call itself).
  The host is resolved and **every** address it resolves to is checked when the run is created
  (422) and again at each delivery, and the connection goes to the address that was checked (the
  TLS name is still the host's): a name that resolves elsewhere later (DNS rebinding) cannot steer a
  delivery. Redirects are followed (at most 3) only to URLs that pass the same checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import random
import re
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

from ..config import ConfigError
from ..observability import WEBHOOK_DELIVERIES
from ..settings import Settings

log = logging.getLogger("agentgen_runtime.webhooks")

# The delivery of each run that ended with a webhook: written by the run's end (trigger below).
SCHEMA = """
CREATE TABLE IF NOT EXISTS agent_webhooks (
    run_id text PRIMARY KEY,
    url text NOT NULL,
    payload jsonb NOT NULL,
    state text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    due_at timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz,
    last_status integer,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz
);
ALTER TABLE agent_webhooks ADD COLUMN IF NOT EXISTS policy text;
CREATE INDEX IF NOT EXISTS agent_webhooks_due ON agent_webhooks (due_at) WHERE state = 'pending';
"""
# The payload is the Platform's: the run, its status, when it started and ended, its final values
# and its error.
FUNCTIONS = ["""
CREATE OR REPLACE FUNCTION agent_webhook_on_end() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO agent_webhooks (run_id, url, policy, payload) VALUES (NEW.run_id,
        NEW.kwargs ->> 'webhook', NEW.webhook_policy, jsonb_build_object(
            'run_id', NEW.run_id, 'thread_id', NEW.thread_id, 'assistant_id', NEW.assistant_id,
            'created_at', NEW.created_at, 'updated_at', NEW.updated_at, 'metadata', NEW.metadata,
            'kwargs', NEW.kwargs, 'multitask_strategy', NEW.multitask_strategy,
            'status', NEW.status, 'run_started_at', NEW.started_at, 'run_ended_at', now(),
            'values', NEW.output,
            'error', CASE WHEN NEW.error IS NOT NULL THEN jsonb_build_object(
                'error', CASE NEW.status WHEN 'timeout' THEN 'TimeoutError' ELSE 'RunError' END,
                'message', NEW.error) END))
    ON CONFLICT (run_id) DO NOTHING;
    PERFORM pg_notify('agent_runs', 'w:');
    RETURN NULL;
END
$fn$
""", "DROP TRIGGER IF EXISTS agent_webhook_on_end ON agent_runs", """
CREATE TRIGGER agent_webhook_on_end AFTER UPDATE OF status ON agent_runs
FOR EACH ROW WHEN (NEW.status IN ('success', 'error', 'timeout', 'interrupted')
                   AND OLD.status IS DISTINCT FROM NEW.status AND NEW.kwargs ? 'webhook')
EXECUTE FUNCTION agent_webhook_on_end()
"""]

PAYLOAD_FIELDS = ("run_id", "thread_id", "assistant_id", "created_at", "updated_at", "metadata",
                  "kwargs", "multitask_strategy", "status", "run_started_at", "run_ended_at",
                  "webhook_sent_at", "values", "error")
POLICY_KEYS = {"require_https", "allowed_domains", "allowed_ports", "max_url_length",
               "disable_loopback", "disable_private_ips"}
CONFIG_KEYS = {"url", "headers", "env_prefix", "allowed_fields"}
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "host.docker.internal"}
MAX_REDIRECTS = 3
BATCH = 20
LEASE_SECONDS = 120  # a delivery claimed by a process that died is taken again after this
ORPHAN_SECONDS = 600  # a delivery no process of its policy took is taken by any after this
_TEMPLATE = re.compile(r"\$\{\{\s*env\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class Refused(ValueError):
    """A webhook URL the policy forbids (the reason, one line)."""


@dataclass(frozen=True)
class Policy:
    """langgraph.json `webhooks`, checked at start-up."""
    require_https: bool = False
    allowed_domains: tuple[str, ...] = ()
    allowed_ports: tuple[int, ...] = ()
    max_url_length: int = 4096
    disable_loopback: bool = True
    disable_private_ips: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    allowed_fields: frozenset[str] | None = None

    @property
    def fingerprint(self) -> str:
        """What decides whether a URL is refused, hashed: a run's webhook is delivered by a process
        of the policy it was accepted under (another, stricter one leaves it alone)."""
        import hashlib

        decisive = (self.require_https, sorted(self.allowed_domains), sorted(self.allowed_ports),
                    self.max_url_length, self.disable_loopback, self.disable_private_ips)
        return hashlib.sha256(json.dumps(decisive).encode()).hexdigest()[:16]

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> Policy:
        """Raises ConfigError naming the key for anything it cannot honour."""
        config = config or {}
        if not isinstance(config, dict):
            raise ConfigError("webhooks: an object")
        for key in set(config) - CONFIG_KEYS:
            raise ConfigError(f"webhooks.{key}: unknown (known: {', '.join(sorted(CONFIG_KEYS))})")
        url = config.get("url") or {}
        for key in set(url) - POLICY_KEYS:
            raise ConfigError(f"webhooks.url.{key}: unknown (known: {', '.join(sorted(POLICY_KEYS))})")
        prefix = config.get("env_prefix", "LG_WEBHOOK_")
        headers: dict[str, str] = {}
        for name, value in (config.get("headers") or {}).items():
            def env(match: re.Match[str], name: str = name) -> str:
                var = match.group(1)
                if not var.startswith(prefix):
                    raise ConfigError(f"webhooks.headers.{name}: {var} does not start with "
                                      f"webhooks.env_prefix ({prefix})")
                if var not in os.environ:
                    raise ConfigError(f"webhooks.headers.{name}: {var} is not set")
                return os.environ[var]
            headers[str(name)] = _TEMPLATE.sub(env, str(value))
        fields = config.get("allowed_fields")
        if fields is not None and not set(fields) <= set(PAYLOAD_FIELDS):
            raise ConfigError(f"webhooks.allowed_fields: {sorted(set(fields) - set(PAYLOAD_FIELDS))} "
                              f"unknown (known: {', '.join(PAYLOAD_FIELDS)})")
        return cls(require_https=bool(url.get("require_https", False)),
                   allowed_domains=tuple(d.strip().lower() for d in url.get("allowed_domains") or ()),
                   allowed_ports=tuple(int(p) for p in url.get("allowed_ports") or ()),
                   max_url_length=int(url.get("max_url_length", 4096)),
                   disable_loopback=bool(url.get("disable_loopback", True)),
                   disable_private_ips=bool(url.get("disable_private_ips", True)),
                   headers=headers, allowed_fields=frozenset(fields) if fields is not None else None)

    # --- checks -----------------------------------------------------------------------------
    def check_url(self, url: str) -> tuple[str, str, int]:
        """The URL's (scheme, host, port) when the policy admits its form; raises Refused."""
        if len(url) > self.max_url_length:
            raise Refused(f"longer than {self.max_url_length} characters")
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if url.startswith("/") or not scheme:
            raise Refused("a relative URL: give the receiver's absolute http(s) URL")
        if scheme not in ("http", "https"):
            raise Refused(f"scheme {scheme!r}: only http and https")
        if self.require_https and scheme != "https":
            raise Refused("must use https (webhooks.url.require_https)")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise Refused("no host")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise Refused("an invalid port") from None
        if self.allowed_ports and port not in self.allowed_ports:
            raise Refused(f"port {port} is not in webhooks.url.allowed_ports")
        if self.allowed_domains and not any(
                host.endswith(d[1:]) if d.startswith("*.") else host == d
                for d in self.allowed_domains):
            raise Refused(f"{host} is not in webhooks.url.allowed_domains")
        if self.disable_loopback and host in LOOPBACK_NAMES:
            raise Refused(f"{host} is loopback (webhooks.url.disable_loopback)")
        return scheme, host, port

    def check_address(self, host: str, address: str) -> None:
        """Raises Refused for an address the policy forbids. An IPv6 address that carries IPv4
        ones (IPv4-mapped and -compatible, 6to4, Teredo, NAT64) is judged by those: it is where
        its packets go."""
        ip = ipaddress.ip_address(address.split("%")[0])
        where = host if host == address else f"{host} resolves to {address}, which"
        embedded = embedded_ipv4(ip)
        for inner in embedded:
            self._check_ip(inner, f"{host} carries {inner}, which" if host == address
                           else f"{host} resolves to {address}, which carries {inner}, which")
        if not embedded:
            self._check_ip(ip, where)

    def _check_ip(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, where: str) -> None:
        if ip.is_link_local:
            raise Refused(f"{where} is link-local (cloud metadata and the like are never called)")
        if ip.is_loopback:
            if self.disable_loopback:
                raise Refused(f"{where} is loopback (webhooks.url.disable_loopback)")
            return
        if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
            raise Refused(f"{where} is not a unicast address")
        if not ip.is_global and self.disable_private_ips:
            raise Refused(f"{where} is private (webhooks.url.disable_private_ips)")

    async def resolve(self, url: str) -> tuple[str, str, str]:
        """(scheme, host, the checked address to connect to) for the URL: every address the host
        resolves to is checked (one refused address refuses the URL). Raises Refused."""
        scheme, host, port = self.check_url(url)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise Refused(f"{host} does not resolve ({exc.strerror})") from None
        addresses = sorted({info[4][0] for info in infos})
        for address in addresses:
            self.check_address(host, address)
        return scheme, host, addresses[0]


NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries to whoever routes it: IPv4-mapped
    (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), 6to4 (2002:AABB:CCDD::), Teredo (the client,
    2001:0::/32) and NAT64 (64:ff9b::/96, 64:ff9b:1::/48: the low 32 bits)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if any(ip in net for net in NAT64) or (ip in IPV4_COMPATIBLE and int(ip) > 1):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def signer(settings: Settings) -> Any:
    """The Standard Webhooks signer of WEBHOOK_SECRET, or None when it is not set."""
    if settings.webhook_secret is None:
        return None
    import base64
    import binascii

    from standardwebhooks import Webhook

    secret = settings.webhook_secret.get_secret_value().strip()
    try:  # (the library decodes leniently: a typo would silently sign with another key)
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < 16:
        raise ConfigError("WEBHOOK_SECRET: not a Standard Webhooks secret: whsec_ followed by the "
                          "base64 of at least 16 random bytes (echo \"whsec_$(openssl rand -base64 32)\")")
    return Webhook(secret)


async def check_webhook(policy: Policy, settings: Settings, url: str) -> None:
    """A run's or a cron's webhook, when it is created: 422 naming the field otherwise."""
    from fastapi import HTTPException

    if settings.webhook_secret is None:
        raise HTTPException(422, "webhook: this server signs webhooks and has no WEBHOOK_SECRET "
                                 "(a Standard Webhooks secret, whsec_...): set it to send webhooks")
    try:
        await policy.resolve(url)
    except Refused as exc:
        raise HTTPException(422, f"webhook: refused: {exc}") from None


class Deliverer:
    """Delivers due webhooks (see the module's docstring): one loop per process."""

    def __init__(self, settings: Settings, pool: Any, policy: Policy) -> None:
        self.settings, self.pool, self.policy = settings, pool, policy
        self.sign = signer(settings)
        self.wake = asyncio.Event()

    async def run(self) -> None:
        import httpx

        async with httpx.AsyncClient(timeout=self.settings.webhook_timeout_seconds,
                                     follow_redirects=False, trust_env=False) as client:
            while True:
                self.wake.clear()  # a run ending from now on wakes the next wait
                try:
                    due = await self._claim()
                    await asyncio.gather(*(self._deliver(client, row) for row in due))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the database is down: next poll
                    log.debug("webhook delivery: %s", exc)
                    due = []
                if len(due) < BATCH:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), 1.0)

    async def _claim(self) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            return await (await conn.execute(
                "UPDATE agent_webhooks SET attempts = attempts + 1, "
                "locked_until = now() + make_interval(secs => %(lease)s) WHERE run_id IN ("
                "SELECT run_id FROM agent_webhooks WHERE state = 'pending' AND due_at <= now() "
                "AND (locked_until IS NULL OR locked_until < now()) "
                # a process of the policy that accepted it, or any once it waited ORPHAN_SECONDS
                # (no process of that policy is left: a deployment changed it)
                "AND (policy IS NULL OR policy = %(policy)s "
                "     OR due_at < now() - make_interval(secs => %(orphan)s)) ORDER BY due_at "
                "LIMIT %(batch)s FOR UPDATE SKIP LOCKED) RETURNING *",
                {"lease": LEASE_SECONDS, "batch": BATCH, "policy": self.policy.fingerprint,
                 "orphan": ORPHAN_SECONDS})).fetchall()

    def _body(self, payload: dict[str, Any]) -> str:
        payload = {**payload, "webhook_sent_at": datetime.now(UTC).isoformat()}
        if self.policy.allowed_fields is not None:
            payload = {k: v for k, v in payload.items() if k in self.policy.allowed_fields}
        return json.dumps(payload, separators=(",", ":"))

    async def _post(self, client: Any, url: str, body: str, run_id: str) -> int:
        """POST to `url` (redirects followed to checked URLs); the final status. Raises Refused,
        httpx.HTTPError."""
        for _ in range(MAX_REDIRECTS + 1):
            scheme, host, address = await self.policy.resolve(url)
            parts = urlsplit(url)
            pinned = parts._replace(netloc=(f"[{address}]" if ":" in address else address)
                                    + (f":{parts.port}" if parts.port else ""))
            now = datetime.now(UTC)
            headers = {**self.policy.headers, "content-type": "application/json",
                       "host": parts.netloc.rsplit("@", 1)[-1], "webhook-id": run_id,
                       "webhook-timestamp": str(int(now.timestamp())),
                       "webhook-signature": self.sign.sign(run_id, now, body),
                       "user-agent": "agentgen-runtime"}
            response = await client.post(pinned.geturl(), content=body.encode(), headers=headers,
                                         extensions={"sni_hostname": host} if scheme == "https" else {})
            if response.is_redirect and "location" in response.headers:
                url = urljoin(url, response.headers["location"])
                continue
            return response.status_code
        raise Refused(f"more than {MAX_REDIRECTS} redirects")

    async def _deliver(self, client: Any, row: dict[str, Any]) -> None:
        import httpx

        status, error, state = None, None, "pending"
        try:
            if self.sign is None:
                raise Refused("WEBHOOK_SECRET is not set (webhooks are signed)")
            status = await self._post(client, row["url"], self._body(row["payload"]), row["run_id"])
            if 200 <= status < 300:
                state = "delivered"
            else:
                error = f"answered {status}"
        except Refused as exc:
            state, error = "refused", str(exc)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        if state == "pending" and row["attempts"] >= self.settings.webhook_max_attempts:
            state = "failed"
        delay = min(3600.0, 2.0 ** row["attempts"]) * random.uniform(0.9, 1.1)  # noqa: S311
        WEBHOOK_DELIVERIES.labels("retried" if state == "pending" else state).inc()
        if state != "delivered":
            log.warning("webhook of run %s (attempt %d): %s%s", row["run_id"], row["attempts"],
                        error, " (retried)" if state == "pending" else f" ({state})")
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE agent_webhooks SET state = %(state)s, last_status = %(status)s, "
                "last_error = %(error)s, locked_until = NULL, "
                "due_at = now() + make_interval(secs => %(delay)s), "
                "delivered_at = CASE WHEN %(state)s = 'delivered' THEN now() END "
                "WHERE run_id = %(run_id)s",
                {"state": state, "status": status, "error": error, "delay": delay,
                 "run_id": row["run_id"]})
