"""API keys (401), rate limiting per key (429 with Retry-After) and the request body limit (413).

Keys come from the `api_keys` setting (a file in the secrets directory, comma-separated). A thread
belongs to the key that created it: the key's identity is a hash, never the key itself.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from typing import Any

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .settings import Settings

log = logging.getLogger(__name__)
ANONYMOUS = "anonymous"


class ApiKeys:
    def __init__(self, settings: Settings) -> None:
        raw = settings.api_keys.get_secret_value() if settings.api_keys else ""
        self.header = settings.api_key_header
        self._keys = {key.strip(): _identity(key.strip()) for key in raw.split(",") if key.strip()}
        if not self._keys:
            log.warning("no api_keys configured: the API accepts every request (development only)")

    def authenticate(self, request: Request) -> str:
        """The caller's identity, or 401."""
        if not self._keys:
            return ANONYMOUS
        given = request.headers.get(self.header, "")
        for key, identity in self._keys.items():
            if hmac.compare_digest(given.encode(), key.encode()):
                return identity
        raise HTTPException(401, f"missing or invalid API key (header {self.header})",
                            headers={"WWW-Authenticate": "ApiKey"})


def _identity(key: str) -> str:
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:16]


class RateLimiter:
    """`limit` requests per minute per identity, in fixed one-minute windows: in Redis when enabled
    (shared by every replica), else in this process."""

    def __init__(self, limit: int, redis: Any | None = None) -> None:
        self.limit, self.redis = limit, redis
        self._local: dict[str, tuple[int, int]] = {}

    async def check(self, identity: str) -> None:
        now = time.time()
        window = int(now // 60)
        if self.redis is not None:
            key = f"ratelimit:{identity}:{window}"
            async with self.redis.pipeline(transaction=True) as pipe:
                count, _ = await pipe.incr(key).expire(key, 61).execute()
        else:
            current_window, count = self._local.get(identity, (window, 0))
            count = count + 1 if current_window == window else 1
            self._local[identity] = (window, count)
        if count > self.limit:
            retry_after = max(1, math.ceil(60 - now % 60))
            raise HTTPException(429, f"rate limit of {self.limit} requests per minute exceeded",
                                headers={"Retry-After": str(retry_after)})


class BodyLimitMiddleware:
    """413 for a body above `max_bytes`, by Content-Length or while it streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _too_large(send, self.max_bytes)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _too_large(send, self.max_bytes)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send, max_bytes: int) -> None:
    body = b'{"detail":"request body larger than %d bytes"}' % max_bytes
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
