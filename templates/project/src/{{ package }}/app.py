"""The HTTP service: liveness (`/health`), readiness (`/ready`) and the agent's API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from .db import create_pool, setup_schema
from .settings import Settings, get_settings

log = logging.getLogger(__name__)
READY_TIMEOUT_SECONDS = 2.0


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
        return results


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = create_pool(settings)
        # Start even when the database is down: /ready reports it, and the pool keeps reconnecting.
        await app.state.pool.open(wait=False)
        if settings.redis_enabled:
            from redis.asyncio import Redis

            app.state.redis = Redis.from_url(settings.redis_url.get_secret_value(),
                                             socket_timeout=READY_TIMEOUT_SECONDS)
        try:
            await app.state.checks.checkpointer()
        except Exception as exc:  # noqa: BLE001
            log.warning("checkpointer schema not set up yet (database unavailable?): %s", exc)
        try:
            yield
        finally:
            if settings.redis_enabled:
                await app.state.redis.aclose()
            await app.state.pool.close()

    app = FastAPI(title=__package__, lifespan=lifespan)
    app.state.settings = settings
    app.state.checks = Checks(app, settings)

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

    return app
