"""What every router takes from a request: the service, the caller's scope, and the checks that
apply to every route."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException
from starlette.requests import HTTPConnection

from ..ownership import Scope
from ..service import Service


def service(request: HTTPConnection) -> Service:
    return request.app.state.service


def scope(request: HTTPConnection) -> Scope:
    """The caller's scope: set by authentication (its identity; with custom auth its user, whose
    every operation the handlers authorize: `Scope.authorize`), never by the request's content."""
    handlers = request.app.state.handlers
    return Scope(request.state.identity, user=request.state.user, handlers=handlers,
                 authorized=handlers is None)


def plain_parameters(request: HTTPConnection) -> None:
    """Ids in the path and values in the query are text PostgreSQL can store (no NUL)."""
    for name, value in (*request.path_params.items(), *request.query_params.items()):
        if "\x00" in value:
            raise HTTPException(422, f"{name}: contains a NUL character")


def sse(event: str, data: Any, seq: int | str | None = None) -> bytes:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def run_headers(request: HTTPConnection) -> dict[str, str]:
    """The request headers langgraph.json http.configurable_headers gives a run's config (never a
    credential: `auth/credentials.py`)."""
    wanted = request.app.state.config.http.configurable_headers
    if wanted is None:
        return {}
    credentials = request.app.state.credentials
    return {name: value for name, value in request.headers.items()
            if wanted.admits(name) and not credentials.secret(name)}


def idempotency_key(key: Annotated[str | None, Header(alias="Idempotency-Key")] = None) -> str | None:
    """A run creation's Idempotency-Key (the IETF draft's header): 1-255 visible ASCII characters."""
    if key is not None and not (0 < len(key) <= 255 and key.isascii() and key.isprintable()):
        raise HTTPException(422, "Idempotency-Key: 1 to 255 visible ASCII characters (e.g. a UUID)")
    return key


Svc = Annotated[Service, Depends(service)]
IdempotencyKey = Annotated[str | None, Depends(idempotency_key)]
Caller = Annotated[Scope, Depends(scope)]
Headers = Annotated[dict[str, str], Depends(run_headers)]
