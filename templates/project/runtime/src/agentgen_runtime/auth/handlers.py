"""Custom authentication and authorization: langgraph.json `auth.path` names a `langgraph_sdk.Auth`
object, served with LangGraph Platform's semantics.

- `@auth.authenticate` turns a request into a user (its `identity`, `permissions`, and whatever
  else the handler returns) or an HTTP error. It is called with the parameters it names, as on the
  Platform: `request`, `headers`, `authorization`, `path`, `method`, `query_params`,
  `path_params`, `scope`, `scopes`, `user`.
- `@auth.on...` handlers authorize each operation: the most specific handler for (resource,
  action) runs (resource.action, resource, action, then the global one) with the operation's
  `value`; it may change the value (stamp `metadata` on what is created, move a store namespace)
  and return `None`/`True` (allowed), `False` (403) or a metadata filter (`{"owner": "a"}`,
  `{"k": {"$eq": v}}`, `{"k": {"$contains": v}}`, `{"$or": [...]}`, `{"$and": [...]}`) that every
  statement of the operation applies (ownership.Scope carries it into SQL).
- **Fails closed**: a module that cannot load, an object that is not an `Auth` or has no
  authenticate handler, or a handler naming a parameter it cannot be given stops the start-up in
  one line; a handler that raises, or returns something invalid, answers that request 401/403 (its
  own HTTPException), 403 (an assertion) or 500: never access.

The authenticated user reaches the run's graph as `config["configurable"]["langgraph_auth_user"]`
(with `langgraph_auth_user_id` and `langgraph_auth_permissions`), recorded with the run so any
replica runs it alike; a client cannot set those keys itself.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from fastapi import HTTPException
from starlette.requests import HTTPConnection

from ..config import Config, ConfigError, import_object
from .credentials import Credentials

log = logging.getLogger(__name__)

# The parameters an authenticate handler may name (as langgraph-api passes them).
PARAMETERS = ("request", "headers", "authorization", "path", "method", "query_params",
              "path_params", "scope", "scopes", "user")
USER_KEYS = ("langgraph_auth_user", "langgraph_auth_user_id", "langgraph_auth_permissions")
MAX_FILTER_DEPTH = 2
OPERATORS = ("$eq", "$contains")


class AuthUser(Mapping[str, Any]):
    """The authenticated user as handlers and graphs see it (as the Platform's): attributes and
    keys alike (`user.identity`, `user["identity"]`, `user.org` for a field the handler returned)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)

    @property
    def identity(self) -> str:
        return self._data["identity"]

    @property
    def is_authenticated(self) -> bool:
        return bool(self._data.get("is_authenticated", True))

    @property
    def display_name(self) -> str:
        return self._data.get("display_name") or self.identity

    @property
    def permissions(self) -> list[str]:
        return list(self._data.get("permissions") or [])

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_data"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def dict(self) -> dict[str, Any]:
        return dict(self._data)

    model_dump = dict

    def __repr__(self) -> str:
        return f"AuthUser({self._data!r})"


def user_data(response: Any) -> dict[str, Any]:
    """What an authenticate handler returned, as the user's fields (identity, display_name,
    is_authenticated, permissions, and the handler's own). Raises ValueError when it names no
    identity."""
    permissions: Any = None
    if isinstance(response, tuple):
        if len(response) != 2:
            raise ValueError(f"expected (permissions, user), got a tuple of {len(response)}")
        permissions, response = response
    if isinstance(response, str):
        data: dict[str, Any] = {"identity": response}
    elif isinstance(response, Mapping):
        data = dict(response)
    elif hasattr(response, "identity"):
        if callable(getattr(response, "model_dump", None)):
            data = dict(response.model_dump(mode="json"))
        elif callable(getattr(response, "dict", None)):
            data = dict(response.dict())
        else:
            data = {}
        for name in ("identity", "display_name", "is_authenticated", "permissions"):
            if name not in data and hasattr(response, name):
                data[name] = getattr(response, name)
    else:
        raise ValueError(f"expected a user identity (a string), a dict with 'identity' or an "
                         f"object with .identity; got {type(response).__name__}")
    if permissions is not None:
        data["permissions"] = permissions
    identity = data.get("identity")
    if not isinstance(identity, str) or not identity:
        raise ValueError("the user's identity must be a non-empty string")
    perms = data.get("permissions")
    if perms is None:
        data["permissions"] = []
    elif isinstance(perms, str) or not all(isinstance(p, str) for p in perms):
        raise ValueError("permissions must be a list of strings")
    else:
        data["permissions"] = list(perms)
    data.setdefault("display_name", identity)
    data.setdefault("is_authenticated", True)
    return data


def check_filter(filters: Any, depth: int = 0) -> None:
    """A handler's filter is well formed (ValueError naming what is not): the Platform's operators,
    $or/$and of at least two groups, nested at most twice."""
    if depth > MAX_FILTER_DEPTH:
        raise ValueError(f"filter nested deeper than {MAX_FILTER_DEPTH} levels")
    if not isinstance(filters, dict):
        raise ValueError(f"a filter is a dict, got {type(filters).__name__}")
    for key, value in filters.items():
        if key in ("$or", "$and"):
            if not isinstance(value, list) or len(value) < 2:
                raise ValueError(f"{key}: a list of at least 2 filters")
            for group in value:
                check_filter(group, depth + 1)
        elif key.startswith("$"):
            raise ValueError(f"unknown operator {key} (known: $or, $and)")
        elif (isinstance(value, dict) and any(k.startswith("$") for k in value)
              and (len(value) != 1 or next(iter(value)) not in OPERATORS)):
            raise ValueError(f"{key}: one operator of {', '.join(OPERATORS)}, got {list(value)}")


def matches(metadata: Mapping[str, Any], filters: Mapping[str, Any] | None) -> bool:
    """Whether `metadata` passes a checked filter (the SQL of ownership.Scope, for what is not a
    row: the graphs' system assistants)."""
    if not filters:
        return True
    for key, value in filters.items():
        if key == "$or":
            if not any(matches(metadata, group) for group in value):
                return False
        elif key == "$and":
            if not all(matches(metadata, group) for group in value):
                return False
        elif isinstance(value, dict) and next(iter(value), "").startswith("$"):
            op, operand = next(iter(value.items()))
            if key not in metadata:
                return False
            if op == "$eq" and metadata[key] != operand:
                return False
            if op == "$contains":
                have = metadata[key]
                wanted = operand if isinstance(operand, list) else [operand]
                if not isinstance(have, list) or any(w not in have for w in wanted):
                    return False
        elif key not in metadata or metadata[key] != value:
            return False
    return True


class Handlers:
    """The project's `Auth` object, loaded and checked once at start-up."""

    def __init__(self, auth: Any, location: str) -> None:
        self.auth, self.location = auth, location
        self.authenticate_fn = auth._authenticate_handler
        parameters = inspect.signature(self.authenticate_fn).parameters
        unsupported = [name for name, p in parameters.items()
                       if name not in PARAMETERS and p.default is p.empty
                       and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if unsupported:
            raise ConfigError(f"langgraph.json auth.path {location}: the authenticate handler takes "
                              f"{', '.join(unsupported)}, which the server cannot give (it gives "
                              f"{', '.join(PARAMETERS)})")
        self.names = {name for name in parameters if name in PARAMETERS}
        self._cache: dict[tuple[str, str], Any] = {}
        self.credentials = Credentials()  # (the app's own, set by the app)

    @classmethod
    def load(cls, config: Config) -> Handlers | None:
        """The handlers langgraph.json names, or None. Raises ConfigError (one line naming the
        file) for anything that would otherwise open or break access."""
        location = (config.auth or {}).get("path")
        if not location:
            return None
        try:
            from langgraph_sdk import Auth
        except ImportError:
            raise ConfigError("langgraph.json auth.path: langgraph-sdk is not installed (it provides "
                              "langgraph_sdk.Auth); add it to the project's dependencies") from None
        if ":" not in location:
            raise ConfigError(f"langgraph.json auth.path {location!r}: expected './file.py:name' "
                              "or 'module:name'")
        try:
            auth = import_object(location, config.base)
        except ConfigError as exc:
            raise ConfigError(f"langgraph.json auth.path: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - any import failure refuses the start-up
            raise ConfigError(f"langgraph.json auth.path {location}: cannot load it: "
                              f"{type(exc).__name__}: {' '.join(str(exc).split())}") from None
        if not isinstance(auth, Auth):
            raise ConfigError(f"langgraph.json auth.path {location}: expected a langgraph_sdk.Auth "
                              f"object, got {type(auth).__name__}")
        if auth._authenticate_handler is None:
            raise ConfigError(f"langgraph.json auth.path {location}: the Auth object has no "
                              "@auth.authenticate handler")
        handlers = cls(auth, location)
        handlers.warn_uncovered()
        return handlers

    def warn_uncovered(self) -> None:
        """As langgraph-api: operations no handler covers are allowed unfiltered; say which."""
        auth = self.auth
        if not auth._handlers and not auth._global_handlers:
            return
        if auth._global_handlers or ("*", "*") in auth._handlers:
            return
        known = {"threads": ("create", "read", "update", "delete", "search", "create_run"),
                 "assistants": ("create", "read", "update", "delete", "search"),
                 "crons": ("create", "read", "update", "delete", "search"),
                 "store": ("put", "get", "search", "delete", "list_namespaces")}
        missing = [f"{r}.{a}" for r, actions in known.items() for a in actions
                   if not any(k in auth._handlers for k in ((r, a), (r, "*"), ("*", a)))]
        if missing:
            log.warning("custom auth: no handler covers %s: those operations are allowed to every "
                        "authenticated user, unfiltered (add a global @auth.on handler to deny by "
                        "default)", ", ".join(missing))

    async def authenticate(self, request: HTTPConnection) -> AuthUser:
        """The request's user; an HTTPException (the handler's own status, else 401/500)."""
        from langgraph_sdk.auth.exceptions import HTTPException as AuthHTTPException

        args = self._arguments(request)
        try:
            result = self.authenticate_fn(**args)
            if inspect.isawaitable(result):
                result = await result
        except AuthHTTPException as exc:
            raise HTTPException(exc.status_code, exc.detail,
                                headers=dict(exc.headers) if exc.headers else None) from None
        except HTTPException:
            raise
        except Exception as exc:  # a failing handler never lets a request through
            log.exception("custom auth: the authenticate handler failed")
            raise HTTPException(500, f"authentication failed: the authenticate handler raised "
                                     f"{type(exc).__name__}") from None
        finally:  # what the server reads later (content-type, ...) is not the handler's
            vars(request).pop("_headers", None)
        try:
            return AuthUser(user_data(result))
        except ValueError as exc:
            log.error("custom auth: the authenticate handler returned an invalid user: %s", exc)
            raise HTTPException(500, f"authentication failed: the authenticate handler returned an "
                                     f"invalid user ({exc})") from None

    def _arguments(self, request: HTTPConnection) -> dict[str, Any]:
        scope = request.scope
        given: dict[str, Any] = {}
        for name in self.names:
            if name == "request":
                # the headers it reads by name are credentials (credentials.py, here)
                request._headers = self.credentials.recording_headers(scope)
                given[name] = request
            elif name == "headers":
                given[name] = self.credentials.recording_dict(scope.get("headers", []))
            elif name == "authorization":
                given[name] = request.headers.get("authorization")
            elif name == "path":
                given[name] = scope["path"]
            elif name == "method":
                given[name] = scope.get("method", "GET")
            elif name == "query_params":
                given[name] = request.query_params
            elif name == "path_params":
                given[name] = dict(request.path_params)
            elif name == "scope":
                given[name] = scope
            elif name == "scopes":
                given[name] = []
            elif name == "user":
                given[name] = None
        return given

    def handler(self, resource: str, action: str) -> Any:
        key = (resource, action)
        if key not in self._cache:
            found = None
            for candidate in (key, (resource, "*"), ("*", action), ("*", "*")):
                if candidate in self.auth._handlers:
                    found = self.auth._handlers[candidate][-1]
                    break
            if found is None and self.auth._global_handlers:
                found = self.auth._global_handlers[-1]
            self._cache[key] = found
        return self._cache[key]

    async def authorize(self, user: AuthUser, resource: str, action: str,
                        value: dict[str, Any]) -> dict[str, Any] | None:
        """Run the handler for (resource, action) on `value` (which it may change): the filter it
        returns (None: unfiltered), or an HTTPException (its own, 403 when it says no, 500 when
        it fails)."""
        handler = self.handler(resource, action)
        if handler is None:
            return None
        from langgraph_sdk.auth.exceptions import HTTPException as AuthHTTPException
        from langgraph_sdk.auth.types import AuthContext

        ctx = AuthContext(user=user, permissions=user.permissions, resource=resource,  # type: ignore[arg-type]
                          action=action)  # type: ignore[arg-type]
        try:
            result = await handler(ctx=ctx, value=value)
        except AuthHTTPException as exc:
            raise HTTPException(exc.status_code, exc.detail,
                                headers=dict(exc.headers) if exc.headers else None) from None
        except HTTPException:
            raise
        except AssertionError as exc:
            raise HTTPException(403, str(exc) or "Forbidden") from None
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:  # a failing handler never lets a request through
            log.exception("custom auth: the %s.%s handler failed", resource, action)
            raise HTTPException(500, f"authorization failed: the {resource}.{action} handler raised "
                                     f"{type(exc).__name__}") from None
        if result is None or result is True:
            return None
        if result is False:
            raise HTTPException(403, "Forbidden")
        try:
            check_filter(result)
        except ValueError as exc:
            log.error("custom auth: the %s.%s handler returned an invalid filter: %s",
                      resource, action, exc)
            raise HTTPException(500, f"authorization failed: the {resource}.{action} handler "
                                     f"returned an invalid filter ({exc})") from None
        return result or None


def stamp_user(config: dict[str, Any] | None, user: AuthUser | None) -> dict[str, Any]:
    """A run's config with the caller's user in `configurable` (as on the Platform), and whatever
    a client put under those keys removed: only authentication sets them."""
    config = dict(config or {})
    configurable = {k: v for k, v in (config.get("configurable") or {}).items() if k not in USER_KEYS}
    if user is not None:
        configurable.update(langgraph_auth_user=user.dict(), langgraph_auth_user_id=user.identity,
                            langgraph_auth_permissions=user.permissions)
    config["configurable"] = configurable
    return config
