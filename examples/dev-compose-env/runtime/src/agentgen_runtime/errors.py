"""Every failure is one JSON answer: `{"error", "message", "request_id"}` for every 4xx and 5xx.

A dependency outage (the pool cannot give a connection within the connect timeout, PostgreSQL or
Redis refuses) is 503 with `Retry-After`, never 500. An unexpected exception is a 500 answered by the
application itself, so the client's keep-alive connection stays usable (uvicorn closes a connection
whose application raised). An exception after the headers went out drops the connection: a cut-off
body is what tells a client (the SDK rejoins at `Location`) that the answer is not complete.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketState

from .observability import DEPENDENCY_ERRORS, request_id

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 5
MESSAGE_LIMIT = 1000
CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 422: "invalid_request",
    429: "rate_limited", 500: "internal_error", 503: "unavailable", 504: "timeout",
}


class DependencyUnavailable(Exception):
    """PostgreSQL or Redis cannot serve the request now (answered 503 + Retry-After)."""

    def __init__(self, dependency: str, reason: str) -> None:
        super().__init__(f"{dependency} unavailable: {reason}")
        self.dependency = dependency


def error_code(status: int) -> str:
    return CODES.get(status) or HTTPStatus(status).phrase.lower().replace(" ", "_")


def error_body(status: int, message: str, error: str | None = None) -> dict[str, Any]:
    return {"error": error or error_code(status), "message": message[:MESSAGE_LIMIT],
            "request_id": request_id.get()}


def error_response(status: int, message: str, headers: dict[str, str] | None = None,
                   error: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, error), status_code=status, headers=headers)


def dependency_failure(exc: BaseException) -> str | None:
    """The dependency an exception says is down ("postgres", "redis"), or None."""
    import psycopg
    import psycopg_pool

    if isinstance(exc, DependencyUnavailable):
        return exc.dependency
    if isinstance(exc, psycopg_pool.PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError):
        return "postgres"
    try:
        import redis.exceptions
    except ImportError:
        return None
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return "redis"
    return None


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        if error.get("type") == "extra_forbidden":
            problems.append(f"{where}: unknown field (not supported by this server)")
        else:
            problems.append(f"{where}: {error.get('msg')}")
    return "; ".join(problems) or "invalid request"


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: HTTPConnection, exc: StarletteHTTPException) -> JSONResponse | None:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        response = error_response(exc.status_code, message, dict(exc.headers or {}))
        if isinstance(request, WebSocket):
            await refuse_socket(request, response)
            return None
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, _validation_message(exc))


async def refuse_socket(socket: WebSocket, response: JSONResponse) -> None:
    """A WebSocket refused before it was accepted (its key, custom auth, a limit) gets the answer a
    request would, as the handshake's HTTP response; once accepted (or where the server cannot send
    one) it is closed with the policy-violation code and the message as reason."""
    if socket.client_state == WebSocketState.CONNECTING \
            and "websocket.http.response" in socket.scope.get("extensions", {}):
        await socket.send_denial_response(response)
        return
    reason = json.loads(bytes(response.body)).get("message", "")[:120]
    await socket.close(code=1008, reason=reason)


def unexpected_response(exc: BaseException) -> JSONResponse:
    dependency = dependency_failure(exc)
    if dependency is not None:
        DEPENDENCY_ERRORS.labels(dependency).inc()
        log.warning("%s unavailable: %s: %s", dependency, type(exc).__name__, exc)
        return error_response(503, f"{dependency} is unavailable, retry later",
                              {"Retry-After": str(RETRY_AFTER_SECONDS)})
    log.error("unhandled error", exc_info=exc)
    return error_response(500, f"{type(exc).__name__}: {exc}")


class ErrorMiddleware:
    """Turns any exception escaping the routes into a JSON answer (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = finished = False

        async def tracking_send(message: Message) -> None:
            nonlocal started, finished
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if not started:
                await unexpected_response(exc)(scope, receive, send)
            elif not finished:
                # The answer cannot be completed (a run's outcome is unknown here): the connection
                # is dropped (uvicorn closes it when the application raises), never ended cleanly,
                # so that the client sees a cut-off body and rejoins the run at Location.
                log.warning("response aborted after it started: %s: %s", type(exc).__name__, exc)
                raise
            else:
                log.error("error after the response ended", exc_info=exc)
