"""The HTTP service: liveness (`/health`), readiness (`/ready`), metrics (`/metrics`) and the
LangGraph-compatible API (api.py), behind API keys, rate limits and a body size limit."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api import Service, build_router
from .db import create_pool, measured_saver, setup_schema
from .graphs import load_graphs
from .observability import (
    DEPENDENCY_UP,
    HTTP_LATENCY,
    HTTP_REQUESTS,
    configure_integrations,
    configure_logging,
    metrics_response,
    request_id,
    thread_id,
)
from .security import ApiKeys, BodyLimitMiddleware, RateLimiter
from .settings import Settings, get_settings

log = logging.getLogger(__name__)
access_log = logging.getLogger("access")
READY_TIMEOUT_SECONDS = 2.0
OPS_ROUTES = {"/health", "/ready", "/metrics"}


class Checks:
    """Readiness of the dependencies: Postgres, the checkpointer schema and Redis when enabled."""

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        self.app, self.settings = app, settings
        self.schema_ready = False

    async def postgres(self) -> None:
        async with self.app.state.pool.connection(timeout=READY_TIMEOUT_SECONDS) as conn:
            await conn.execute("SELECT 1")

    async def checkpointer(self) -> None:
        if not self.schema_ready:
            await setup_schema(self.app.state.pool)
            self.schema_ready = True

    async def redis(self) -> None:
        await self.app.state.redis.ping()

    async def run(self) -> dict[str, str]:
        names = ["postgres", "checkpointer"] + (["redis"] if self.settings.redis_enabled else [])
        results: dict[str, str] = {}
        for name in names:
            try:
                async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                    await getattr(self, name)()
                results[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready", with its reason
                results[name] = f"{type(exc).__name__}: {exc}".strip()[:200]
            DEPENDENCY_UP.labels(name).set(1 if results[name] == "ok" else 0)
        return results


class AccessLogMiddleware:
    """Request id (X-Request-ID in and out), one JSON access log line, and HTTP metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        rid = headers.get(b"x-request-id", b"").decode()[:64] or uuid.uuid4().hex
        request_id.set(rid)
        thread_id.set(None)
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            HTTP_REQUESTS.labels(scope["method"], route, str(status)).inc()
            HTTP_LATENCY.labels(scope["method"], route).observe(elapsed)
            if route not in OPS_ROUTES:
                access_log.info("%s %s %d", scope["method"], scope["path"], status, extra={
                    "fields": {"method": scope["method"], "path": scope["path"], "route": route,
                               "status": status, "latency_ms": round(elapsed * 1000, 2)}})


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)
    configure_integrations(settings)
    keys = ApiKeys(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from langgraph.store.postgres.aio import AsyncPostgresStore

        app.state.pool = create_pool(settings)
        # Start even when the database is down: /ready reports it, and the pool keeps reconnecting.
        await app.state.pool.open(wait=False)
        redis = None
        try:
            if settings.redis_enabled:
                from redis.asyncio import Redis

                redis = Redis.from_url(settings.redis_url.get_secret_value(),
                                       socket_timeout=READY_TIMEOUT_SECONDS)
            app.state.redis = redis
            app.state.limiter = RateLimiter(settings.rate_limit_per_minute, redis)
            app.state.service = Service(settings, app.state.pool, load_graphs(),
                                        measured_saver(app.state.pool),
                                        AsyncPostgresStore(app.state.pool))
            try:
                await app.state.checks.checkpointer()
            except Exception as exc:  # noqa: BLE001
                log.warning("checkpointer schema not set up yet (database unavailable?): %s", exc)
            yield
            # Graceful shutdown: background runs get the run timeout to finish.
            pending = list(app.state.service.background.values())
            if pending:
                log.info("waiting for %d background run(s) to finish", len(pending))
                await asyncio.wait(pending, timeout=settings.run_timeout_seconds)
        finally:
            if redis is not None:
                await redis.aclose()
            await app.state.pool.close()

    app = FastAPI(title=__package__, lifespan=lifespan)
    app.state.settings = settings
    app.state.checks = Checks(app, settings)

    async def authenticate(request: Request) -> None:
        identity = keys.authenticate(request)
        await request.app.state.limiter.check(identity)
        request.state.identity = identity

    app.include_router(build_router(authenticate))

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        """Liveness: the process serves requests. No I/O."""
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"])
    async def ready() -> Any:
        """Readiness: every dependency answers; 503 with the failing checks otherwise."""
        checks = await app.state.checks.run()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ok else "unavailable", "checks": checks},
                            status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    async def metrics() -> Response:
        if not settings.metrics_enabled:
            return Response(status_code=404)
        body, content_type = metrics_response()
        return Response(body, media_type=content_type)

    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["content-type", settings.api_key_header, "x-request-id"])
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(AccessLogMiddleware)
    return app
