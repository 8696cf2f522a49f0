"""The HTTP server: liveness (`/health`), readiness (`/ready`) and the
LangGraph-compatible API (`api/`, one router per resource), behind API keys, rate limits and a body
size limit, configured by langgraph.json (config.py) and the settings (settings.py). Metrics are
served on a port of their own by `serve` (observability.start_metrics_server)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute, Match, Mount, NoMatchFound
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api import build_router
from .auth.credentials import Credentials
from .auth.handlers import Handlers
from .auth.keys import ApiKeys, BodyLimitMiddleware, RateLimiter
from .config import Config, ConfigError, HeaderPatterns, apply, import_object, load_config
from .db import (
    create_pool,
    fenced_store,
    measured_saver,
    sweep_checkpoints,
    sweep_expired_threads,
)
from .drain import Drain, DrainMiddleware
from .engine.runs import cancel_tasks
from .errors import ErrorMiddleware, install_handlers
from .graphs import load_graphs
from .observability import (
    DEPENDENCY_UP,
    HTTP_LATENCY,
    HTTP_REQUESTS,
    configure_integrations,
    configure_logging,
    request_id,
    thread_id,
)
from .schema import setup_schema
from .secrets import export_agent_secrets
from .service import Service
from .settings import Settings, get_settings, secrets_dir
from .surfaces import crons
from .surfaces.store import OwnedStore
from .surfaces.webhooks import Deliverer, Policy, signer

log = logging.getLogger(__name__)
access_log = logging.getLogger("access")
READY_TIMEOUT_SECONDS = 2.0
OPS_ROUTES = {"/health", "/ready"}


class Checks:
    """Readiness of the dependencies: Postgres, the checkpointer schema and Redis when enabled."""

    def __init__(self, app: FastAPI, settings: Settings, store_index: dict[str, Any] | None = None) -> None:
        self.app, self.settings, self.store_index = app, settings, store_index
        self.schema_ready = False

    async def postgres(self) -> None:
        async with self.app.state.pool.connection(timeout=READY_TIMEOUT_SECONDS) as conn:
            await conn.execute("SELECT 1")

    async def checkpointer(self) -> None:
        if not self.schema_ready:
            await setup_schema(self.app.state.pool, self.store_index)
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

    @staticmethod
    def ready(results: dict[str, str]) -> bool:
        """Redis failing degrades rate limits to per-process ones, it does not stop the API: it
        does not make the replica unready."""
        return all(v == "ok" for k, v in results.items() if k != "redis")


class AccessLogMiddleware:
    """Request id (X-Request-ID in and out), one JSON access log line (with the request headers
    langgraph.json http.logging_headers names), and HTTP metrics."""

    def __init__(self, app: ASGIApp, logged: HeaderPatterns | None = None,
                 credentials: Credentials | None = None) -> None:
        self.app, self.logged = app, logged
        self.credentials = credentials or Credentials()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        rid = _request_id(headers.get(b"x-request-id", b""))
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
                fields = {"method": scope["method"], "path": scope["path"], "route": route,
                          "status": status, "latency_ms": round(elapsed * 1000, 2)}
                if self.logged is not None:
                    fields["headers"] = {name: value.decode("latin-1") for raw, value in headers.items()
                                         if self.logged.admits(name := raw.decode("latin-1").lower())
                                         and not self.credentials.secret(name)}
                access_log.info("%s %s %d", scope["method"], scope["path"], status,
                                extra={"fields": fields})


_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")


def _request_id(given: bytes) -> str:
    """The client's X-Request-ID when it is a plain token (letters, digits, `._:-`, at most 64),
    else a new one: a header is bytes, and it is echoed into logs and a response header."""
    if _REQUEST_ID.fullmatch(given):
        return given.decode("ascii")
    return uuid.uuid4().hex


def prepare(settings: Settings, config: Config | None = None) -> Config:
    """Before any graph is imported: the agent's secrets and langgraph.json's env in the
    environment, local dependencies importable. Raises ConfigError, SecretSourceError."""
    config = config or load_config()
    export_agent_secrets(settings, secrets_dir())
    apply(config)
    Policy.from_config(config.webhooks)  # (its headers read the environment langgraph.json set)
    signer(settings)
    store_options(config)  # the store's options hold (an embedding function imports)
    return config


def store_options(config: Config) -> dict[str, Any]:
    """The PostgreSQL store's options from langgraph.json `store`. Raises ConfigError when the
    installed langgraph-checkpoint-postgres cannot honour them."""
    import inspect

    from langgraph.store.postgres.aio import AsyncPostgresStore

    options: dict[str, Any] = {}
    if config.store.get("index"):
        index = dict(config.store["index"])
        embed = index.get("embed")
        if isinstance(embed, str) and ".py:" in embed:  # "./embeddings.py:embed", as the Platform reads it
            index["embed"] = import_object(embed, config.base)
        elif isinstance(embed, str):  # "openai:text-embedding-3-small": needs langchain and the provider's
            from langgraph.store.base.embed import ensure_embeddings

            try:
                index["embed"] = ensure_embeddings(embed)
            except (ValueError, ImportError) as exc:
                raise ConfigError(f"langgraph.json store.index.embed: {' '.join(str(exc).split())}") from None
        options["index"] = index
    if "ttl" in inspect.signature(AsyncPostgresStore.__init__).parameters:
        # Items put with their own `ttl` (the SDK's put_item) expire whether or not langgraph.json
        # configures `store.ttl`: an expired item is never answered, and the sweeper deletes it.
        options["ttl"] = {"omit_expired": True, **(config.store.get("ttl") or {})}
    elif config.store.get("ttl"):
        raise ConfigError("langgraph.json store.ttl: the installed langgraph-checkpoint-postgres "
                          "has no item TTLs; install a newer release (or remove store.ttl)")
    return options


async def _sweep_periodically(pool: Any, ttl: dict[str, Any]) -> None:
    """langgraph.json checkpointer.ttl: delete threads idle for longer than default_ttl minutes."""
    if ttl.get("strategy", "delete") != "delete" or not ttl.get("default_ttl"):
        return
    interval = 60 * float(ttl.get("sweep_interval_minutes") or 60)
    while True:
        await asyncio.sleep(interval)
        try:
            deleted = await sweep_checkpoints(pool, float(ttl["default_ttl"]))
            if deleted:
                log.info("checkpointer ttl: deleted %d idle thread(s)", deleted)
        except Exception as exc:  # noqa: BLE001 - the next sweep tries again
            log.warning("checkpointer ttl sweep failed: %s: %s", type(exc).__name__, exc)


async def _sweep_threads_periodically(pool: Any, interval: float) -> None:
    """Threads' own TTLs (threads.create/update `ttl`): apply each expired one's strategy."""
    while True:
        await asyncio.sleep(interval)
        try:
            deleted, pruned = await sweep_expired_threads(pool)
            if deleted or pruned:
                log.info("thread ttl: deleted %d, kept the latest state of %d", deleted, pruned)
        except Exception as exc:  # noqa: BLE001 - the next sweep tries again
            log.warning("thread ttl sweep failed: %s: %s", type(exc).__name__, exc)


@asynccontextmanager
async def _lifespan_of(user_app: Any) -> AsyncIterator[None]:
    """langgraph.json http.app's lifespan (a Starlette or FastAPI app's `lifespan`, or its
    on_startup/on_shutdown), run inside the server's as the Platform combines them: a mounted app's
    own lifespan would otherwise never run."""
    context = getattr(getattr(user_app, "router", None), "lifespan_context", None)
    if context is None:
        yield
        return
    async with context(user_app):
        yield


class RouteAuth:
    """langgraph.json http.enable_custom_route_auth: the API's authentication (keys, custom auth,
    rate limits) in front of the user's own routes, WebSocket ones included (a refused handshake
    gets the API's JSON error); the user reaches them as `request.user` (None without custom auth)
    and their failures are the API's JSON errors."""

    def __init__(self, app: ASGIApp, authenticate: Any) -> None:
        self.app, self.authenticate = app, authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # (lifespan)
            await self.app(scope, receive, send)
            return
        from starlette.websockets import WebSocket

        from .errors import error_response, refuse_socket

        connection = Request(scope, receive) if scope["type"] == "http" else WebSocket(scope, receive, send)
        try:
            await self.authenticate(connection)
        except HTTPException as exc:
            answer = error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))
            if scope["type"] == "http":
                await answer(scope, receive, send)
            else:  # the handshake refused: the API's JSON error, as for the API's own sockets
                await refuse_socket(connection, answer)
            return
        scope["user"] = connection.state.user
        await self.app(scope, receive, send)


class AppRoutesFirst(BaseRoute):
    """http.app's routes ahead of the API's, as on the Platform (where the app's routes come first:
    it may take an API path over), but agentgen's probes and the API's documentation (which the
    Platform keeps ahead of the app as well). A request one of the app's routes matches whole goes
    to the app; any other, on down the server's routes."""

    KEPT = frozenset({"/health", "/ready", "/ok", "/docs", "/redoc", "/openapi.json",
                      "/docs/oauth2-redirect"})

    def __init__(self, routes: list[BaseRoute], app: ASGIApp) -> None:
        self.routes, self.app = routes, app

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] in ("http", "websocket") and scope["path"] not in self.KEPT \
                and any(route.matches(scope)[0] == Match.FULL for route in self.routes):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def own_middleware(user_app: Any, order: str) -> list[Any]:
    """http.app's own middleware (a Starlette or FastAPI app's), outermost first, to wrap the API's
    routes as well, as on the Platform (a policy the user enforces in them, a header check, holds
    for the API too). Under middleware_first they wrap the whole server, so they are taken off the
    app (its routes would otherwise pass them twice); under auth_first the app keeps them and they
    wrap the API's routes after the authentication (AroundServer)."""
    middleware = getattr(user_app, "user_middleware", None)
    if not isinstance(middleware, list) or not middleware:
        return []
    middleware = list(middleware)
    if order == "middleware_first":
        user_app.user_middleware = []
        user_app.middleware_stack = None  # (built again without them, were it built already)
    return middleware


class AroundServer:
    """http.app's own middleware around the API (see own_middleware). middleware_first: around
    every request but agentgen's probes (/health, /ready: a middleware written for the Platform,
    which has neither, must not fail a Kubernetes probe). auth_first (`authenticate` given): around
    the requests the API's routes take, after their authentication (the app's own routes have them
    in the app); a WebSocket is authenticated by its route, so it passes them by."""

    PROBES = ("/health", "/ready")

    def __init__(self, app: ASGIApp, middleware: list[Any], authenticate: Any = None,
                 routes: list[Any] | None = None, user_app: Any = None) -> None:
        self.app = wrapped = app
        for entry in reversed(middleware):
            cls, args, kwargs = entry
            wrapped = cls(wrapped, *args, **kwargs)
        self.wrapped = wrapped if authenticate is None else RouteAuth(wrapped, authenticate)
        self.auth_first = authenticate is not None
        self.routes, self.user_app = routes or [], user_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.PROBES \
                or (self.auth_first and not self._api(scope)):
            await self.app(scope, receive, send)
        else:
            await self.wrapped(scope, receive, send)

    def _api(self, scope: Scope) -> bool:
        if scope["type"] != "http":
            return False
        api = [route for route in self.routes
               if not (isinstance(route, Mount) and route.app is self.user_app)]
        for route in api:
            if route.matches(scope)[0] != Match.NONE:
                return not isinstance(route, AppRoutesFirst)  # (the app's: its routes have them)
        return False


def guard_routes(user_app: Any, authenticate: Any, order: str) -> Any:
    """The user's app behind the API's authentication: before its own middleware (auth_first), or
    after them, right before its routes (middleware_first, the Platform's default: a Starlette or
    FastAPI app)."""
    if order == "auth_first":
        return RouteAuth(user_app, authenticate)
    if not isinstance(getattr(user_app, "user_middleware", None), list):
        raise ConfigError("langgraph.json http.middleware_order: middleware_first needs http.app to be "
                          "a Starlette or FastAPI app (its own middleware run first); set auth_first")
    from starlette.middleware import Middleware

    user_app.user_middleware.append(Middleware(RouteAuth, authenticate=authenticate))
    return user_app


def _document_security(app: FastAPI, security: dict[str, Any]) -> None:
    """langgraph.json auth.openapi: the API's security as the project describes it, in /openapi.json."""
    from fastapi.openapi.utils import get_openapi

    def schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            components = document.setdefault("components", {})
            components["securitySchemes"] = security.get("securitySchemes") or {}
            if security.get("security") is not None:
                document["security"] = security["security"]
            for path, methods in (security.get("paths") or {}).items():
                for method, requirement in (methods or {}).items():
                    operation = document.get("paths", {}).get(path, {}).get(method.lower())
                    if operation is not None:
                        operation["security"] = requirement
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = schema  # type: ignore[method-assign]


def create_app(settings: Settings | None = None, config: Config | None = None) -> FastAPI:
    """The ASGI application. Raises AuthConfigError (no API keys while required), ConfigError,
    SecretSourceError before serving anything."""
    settings = settings or get_settings()
    configure_logging(settings)
    config = prepare(settings, config)
    handlers = Handlers.load(config)  # (after prepare: the handler module may read the env)
    keys = ApiKeys(settings, custom_auth=handlers is not None)
    credentials = Credentials(settings.api_key_header)
    if handlers is not None:
        handlers.credentials = credentials  # the headers its authenticate reads are credentials
    webhook_policy = Policy.from_config(config.webhooks)
    stored = store_options(config)  # (once: an embedding given by name is built here)
    configure_integrations(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = create_pool(settings)
        # Start even when the database is down: /ready reports it, and the pool keeps reconnecting.
        await app.state.pool.open(wait=False)
        redis = None
        tasks: list[asyncio.Task[Any]] = []
        try:
            if settings.redis_enabled:
                from redis.asyncio import Redis

                redis = Redis.from_url(settings.redis_url.get_secret_value(),
                                       socket_timeout=READY_TIMEOUT_SECONDS,
                                       socket_connect_timeout=READY_TIMEOUT_SECONDS)
            app.state.redis = redis
            app.state.limiter = RateLimiter(settings.rate_limit_per_minute, redis)
            store = fenced_store(app.state.pool, **stored)
            if settings.store_scope == "key":
                store = OwnedStore(store)
            app.state.service = Service(settings, app.state.pool, await load_graphs(config),
                                        measured_saver(app.state.pool), store)
            app.state.service.webhooks = webhook_policy
            app.state.service.limiter = app.state.limiter
            try:
                await app.state.checks.checkpointer()
            except Exception as exc:  # noqa: BLE001
                log.warning("schema not set up yet (database unavailable?): %s", exc)
            app.state.service.engine.start()
            tasks.append(crons.start(app.state.service))  # every process takes due ticks
            if "webhooks" in config.http.disabled:
                app.state.service.webhooks_disabled = True
            elif settings.webhook_secret is not None:  # (without it: left to processes that sign)
                deliverer = Deliverer(settings, app.state.pool, webhook_policy)
                app.state.service.engine.on_webhook = deliverer.wake.set
                tasks.append(asyncio.create_task(deliverer.run(), name="webhooks"))
            if getattr(store, "supports_ttl", False):  # every replica sweeps (idempotent)
                tasks.append(await store.start_ttl_sweeper())
            if config.checkpointer.get("ttl"):
                tasks.append(asyncio.create_task(_sweep_periodically(app.state.pool,
                                                                     config.checkpointer["ttl"])))
            tasks.append(asyncio.create_task(_sweep_threads_periodically(
                app.state.pool, settings.thread_ttl_sweep_seconds)))
            drain.install(app.state.service.engine, settings.shutdown_grace_seconds)
            async with _lifespan_of(app.state.user_app):  # http.app's own start-up and shutdown
                yield
            # Graceful shutdown: in-flight runs get the grace period, then go back to the queue.
            await app.state.service.engine.stop(settings.shutdown_grace_seconds)
        finally:
            await cancel_tasks(tasks)
            if redis is not None:
                await redis.aclose()
            await app.state.pool.close()

    drain = Drain()
    docs = settings.docs_enabled
    app = FastAPI(title="agentgen-runtime", lifespan=lifespan,
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
                  openapi_url="/openapi.json" if docs else None)
    app.state.drain = drain
    app.state.settings = settings
    app.state.config = config
    app.state.checks = Checks(app, settings, stored.get("index"))
    app.state.handlers = handlers
    app.state.credentials = credentials
    app.state.user_app = None
    if config.auth.get("openapi") and docs:
        _document_security(app, config.auth["openapi"])
    install_handlers(app)

    async def authenticate(request: HTTPConnection) -> None:
        if getattr(request.state, "authenticated", False):
            return  # (already, before http.app's middleware under auth_first: AroundServer)
        identity = keys.authenticate(request)
        user = None
        if handlers is not None:
            try:
                user = await handlers.authenticate(request)
            except HTTPException as exc:
                if exc.status_code == 401:
                    keys.failed(request)  # (429 for an address beyond the failure limit)
                raise
        # rate limited per user with custom auth, else per key
        await app.state.limiter.check(identity if user is None else f"user:{user.identity}")
        request.state.identity = identity
        request.state.user = user
        request.state.authenticated = True

    # (/health, /ready and /ok stay at the root under http.mount_prefix, as on the Platform)
    app.include_router(build_router(authenticate, config.http.disabled), prefix=config.http.mount_prefix)

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        """Liveness: the process serves requests. No I/O."""
        return {"status": "ok"}

    @app.get("/ok", tags=["ops"], include_in_schema=False)
    async def ok() -> dict[str, bool]:
        """LangGraph Platform's liveness path."""
        return {"ok": True}

    @app.get("/ready", tags=["ops"])
    async def ready() -> Any:
        """Readiness: every dependency answers, on the pool the API uses; 503 with the failing
        checks otherwise."""
        checks = await app.state.checks.run()
        ok = Checks.ready(checks)
        return JSONResponse({"status": "ready" if ok else "unavailable", "checks": checks},
                            status_code=200 if ok else 503,
                            headers=None if ok else {"Retry-After": "5"})

    around: list[Any] = []  # http.app's own middleware, to wrap the API's routes too
    if config.http_app:
        # langgraph.json http.app: the user's ASGI app serves every path the API does not.
        user_app = app.state.user_app = import_object(config.http_app, config.base)
        around = own_middleware(user_app, config.http.middleware_order)
        routes = getattr(getattr(user_app, "router", None), "routes", None)
        if config.http.custom_route_auth:
            user_app = guard_routes(user_app, authenticate, config.http.middleware_order)
        if isinstance(routes, list):  # a Starlette or FastAPI app: its routes first
            app.router.routes.insert(0, AppRoutesFirst(routes, user_app))
        app.mount("/", user_app)  # (any other ASGI app: every path the API does not serve)

    # Studio and the SDKs in a browser: any request header (the key's, tracing's), and the answer
    # headers a client reads (a run's Content-Location while it streams, Retry-After).
    # langgraph.json http.cors replaces CORS_ORIGINS, as on the Platform.
    cors = {"allow_methods": ["GET", "POST", "PUT", "PATCH", "DELETE"], "allow_headers": ["*"],
            "expose_headers": ["content-location", "location", "retry-after", "x-request-id"]}
    if config.http.cors is not None:
        app.add_middleware(CORSMiddleware, **{**cors, **config.http.cors})
    elif settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, **cors)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(ErrorMiddleware)
    app.add_middleware(DrainMiddleware, drain=drain)
    app.add_middleware(AccessLogMiddleware, logged=config.http.logging_headers,
                       credentials=credentials)
    if around and config.http.middleware_order == "auth_first":
        app.add_middleware(AroundServer, middleware=around, authenticate=authenticate,
                           routes=app.router.routes, user_app=user_app)
    elif around:
        app.add_middleware(AroundServer, middleware=around)
    return app
