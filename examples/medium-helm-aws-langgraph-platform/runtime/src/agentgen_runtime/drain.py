"""Graceful shutdown. On SIGTERM (or SIGINT) the process stops claiming runs at once, `/ready`
and every new request get 503 + `Retry-After` + `Connection: close` (a load balancer or client
retries elsewhere; nothing hangs), and the engine gets `shutdown_grace_seconds` for its runs before
it hands the rest back to the queue. uvicorn's own handler still runs: it stops accepting
connections and finishes the open ones."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("agentgen_runtime.drain")

# Liveness stays 200 while draining: the process is alive, only leaving.
LIVENESS = ("/health", "/ok")


class Drain:
    def __init__(self) -> None:
        self.draining = False
        self._engine: Any = None
        self._grace = 0.0
        self._stopping: asyncio.Task[Any] | None = None

    def install(self, engine: Any, grace: float) -> None:
        """Chain our handler before the one installed now (uvicorn's) for SIGTERM and SIGINT."""
        self._engine, self._grace = engine, grace
        if threading.current_thread() is not threading.main_thread():
            return  # an embedded app (e.g. a TestClient's thread): its host owns the signals
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)

            def handler(number: int, frame: Any, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(self.begin)
                if callable(previous):
                    previous(number, frame)

            signal.signal(signum, handler)

    def begin(self) -> None:
        if self.draining:
            return
        self.draining = True
        log.info("draining: refusing new requests, runs get %.0f s", self._grace)
        if self._engine is not None:
            self._engine.draining = True
            self._stopping = asyncio.ensure_future(self._engine.release_after(self._grace))


class DrainMiddleware:
    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app, self.drain = app, drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.drain.draining or scope["path"] in LIVENESS:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": "unavailable",
                           "message": "this replica is shutting down; retry (another one answers)",
                           "request_id": None}).encode()
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"5"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
