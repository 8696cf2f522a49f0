"""API keys (401), rate limiting per key (429 with Retry-After) and the request body limit (413).

Keys come from the `api_keys` setting (the `api_keys` file in the secrets directory, comma-separated).
A thread belongs to the key that created it: the key's identity is a hash, never the key itself.
Without keys the server refuses to start, unless `auth_required` is false (then every request is
served as one anonymous identity, with a warning in the log).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import logging
import math
import time
import uuid
from typing import Any

from fastapi import HTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..observability import RATE_LIMIT_FALLBACKS
from ..settings import Settings

log = logging.getLogger(__name__)
ANONYMOUS = "anonymous"
WINDOW_SECONDS = 60.0
REDIS_RETRY_SECONDS = 5.0


class AuthConfigError(RuntimeError):
    """No API keys while they are required."""


class ApiKeys:
    """With custom auth (langgraph.json auth.path) the handler authenticates every request and
    keys are optional: when some are configured, a request needs one as well (both gates)."""

    def __init__(self, settings: Settings, custom_auth: bool = False) -> None:
        self.header = settings.api_key_header
        self._keys = {key: _identity(key) for key in settings.api_key_list()}
        self.failures = FailureLimiter(settings.auth_failures_per_minute)
        if not self._keys and not custom_auth:
            if settings.auth_required:
                raise AuthConfigError(
                    "no API keys: put comma-separated keys in the api_keys secret file (or API_KEYS), "
                    "or set AUTH_REQUIRED=false to serve without authentication")
            log.warning("AUTH_REQUIRED=false and no api_keys: the API accepts every request")

    def authenticate(self, request: HTTPConnection) -> str:
        """The caller's identity, or 401."""
        if not self._keys:
            return ANONYMOUS
        given = request.headers.get(self.header, "").encode()
        for key, identity in self._keys.items():
            if hmac.compare_digest(given, key.encode()):
                return identity
        # A valid key always passes (a guesser behind the same proxy address must not lock out
        # the application); failures beyond the limit are answered 429 instead of 401.
        self.failed(request)
        raise HTTPException(401, f"missing or invalid API key (header {self.header})",
                            headers={"WWW-Authenticate": "ApiKey"})

    def failed(self, request: HTTPConnection) -> None:
        """Count a failed authentication of the request's address: 429 beyond the limit."""
        address = request.client.host if request.client else "unknown"
        self.failures.record(address)
        self.failures.check(address)


class FailureLimiter:
    """At most `limit` failed authentications per client address in any sliding minute are
    answered 401, the rest 429 with Retry-After, in this process (a key guesser is slowed on every
    replica it reaches; AUTH_FAILURES_PER_MINUTE); a bounded number of addresses is remembered,
    the least recent forgotten first. The address is the client's as uvicorn sees it: behind a
    proxy, its X-Forwarded-For when FORWARDED_ALLOW_IPS trusts that proxy."""

    MAX_ADDRESSES = 10_000

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._log: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()

    def _recent(self, address: str, now: float) -> collections.deque[float] | None:
        failures = self._log.get(address)
        while failures and failures[0] <= now - WINDOW_SECONDS:
            failures.popleft()
        return failures

    def check(self, address: str) -> None:
        now = time.monotonic()
        failures = self._recent(address, now)
        if failures is not None and len(failures) > self.limit:
            retry = max(1, math.ceil(failures[0] + WINDOW_SECONDS - now))
            raise HTTPException(429, f"too many failed authentication attempts from this address "
                                     f"({self.limit} per minute)",
                                headers={"Retry-After": str(retry)})

    def record(self, address: str) -> None:
        now = time.monotonic()
        failures = self._recent(address, now)
        if failures is None:
            failures = self._log[address] = collections.deque()
        self._log.move_to_end(address)
        failures.append(now)
        while len(self._log) > self.MAX_ADDRESSES:
            self._log.popitem(last=False)



def _identity(key: str) -> str:
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:16]


# A sliding-window log in Redis: at most `limit` requests in any WINDOW_SECONDS, on Redis' clock
# (shared by every replica). Returns {allowed, seconds until the oldest request leaves the window}.
_SLIDING_WINDOW = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], t, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
  return {1, '0'}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tostring(tonumber(oldest[2]) + window - t)}
"""


class RateLimiter:
    """`limit` requests per identity in any sliding minute (no 2x burst at window edges): in Redis
    when enabled, shared by every replica; in this process otherwise, and whenever Redis fails
    (logged and counted; Redis is tried again after a few seconds)."""

    def __init__(self, limit: int, redis: Any | None = None) -> None:
        self.limit, self.redis = limit, redis
        self._local: dict[str, collections.deque[float]] = {}
        self._redis_down_until = 0.0
        self._script = redis.register_script(_SLIDING_WINDOW) if redis is not None else None

    async def check(self, identity: str) -> None:
        allowed, retry_after = None, 0.0
        if self._script is not None and time.monotonic() >= self._redis_down_until:
            try:
                async with asyncio.timeout(2):
                    result = await self._script(keys=[f"ratelimit:{identity}"],
                                                args=[self.limit, WINDOW_SECONDS, uuid.uuid4().hex])
                allowed, retry_after = bool(int(result[0])), float(result[1])
                if self._redis_down_until:
                    log.info("redis is back: rate limits are shared again")
                    self._redis_down_until = 0.0
            except Exception as exc:  # noqa: BLE001 - any Redis failure: fall back, never fail requests
                if not self._redis_down_until:
                    log.warning("redis failed (%s: %s): rate limits are per process until it is back",
                                type(exc).__name__, exc)
                self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
        if allowed is None:
            if self._script is not None:
                RATE_LIMIT_FALLBACKS.inc()
            allowed, retry_after = self._check_local(identity)
        if not allowed:
            raise HTTPException(429, f"rate limit of {self.limit} requests per minute exceeded",
                                headers={"Retry-After": str(max(1, math.ceil(retry_after)))})

    def _check_local(self, identity: str) -> tuple[bool, float]:
        now = time.monotonic()
        log_ = self._local.setdefault(identity, collections.deque())
        while log_ and log_[0] <= now - WINDOW_SECONDS:
            log_.popleft()
        if len(log_) < self.limit:
            log_.append(now)
            return True, 0.0
        return False, log_[0] + WINDOW_SECONDS - now


class BodyLimitMiddleware:
    """413 for a body above `max_bytes`, by Content-Length or while it streams in (chunked). The
    body is read here, before the application sees it: an error raised while the application's
    own parser reads it would become its 400."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        if scope.get("method") in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        chunks, received = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            body = message.get("body", b"")
            received += len(body)
            if received > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([whole], receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        from ..errors import error_response

        response = error_response(413, f"request body larger than {self.max_bytes} bytes")
        await response(scope, receive, send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that returns `messages` first, then what the client sends (its disconnect)."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
