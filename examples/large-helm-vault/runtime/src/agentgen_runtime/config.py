"""`langgraph.json`, read the way LangGraph Platform reads it.

`graphs` (a file path or a module, `:attribute`; a compiled graph, a graph builder or a factory),
`env` (a dotenv file or a mapping: loaded into the process environment before graphs are imported;
values already in the environment win), `dependencies` (local directories become importable when they
are not installed), `store` (`index`, `ttl`), `checkpointer` (`ttl`), `http.app` (your own ASGI app,
served beside the API). The file is `$LANGGRAPH_CONFIG`, else `./langgraph.json`, else
`/app/langgraph.json`.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """langgraph.json is missing or says something the runtime cannot serve."""


@dataclass(frozen=True)
class GraphSpec:
    graph_id: str
    location: str  # "./path/file.py:attr" or "package.module:attr"
    description: str | None = None


@dataclass(frozen=True)
class Config:
    path: Path
    graphs: tuple[GraphSpec, ...]
    env: dict[str, str] = field(default_factory=dict)
    dependencies: tuple[str, ...] = ()
    store: dict[str, Any] = field(default_factory=dict)
    checkpointer: dict[str, Any] = field(default_factory=dict)
    http: Http = field(default_factory=lambda: Http())
    webhooks: dict[str, Any] = field(default_factory=dict)
    auth: dict[str, Any] = field(default_factory=dict)

    @property
    def http_app(self) -> str | None:
        return self.http.app

    @property
    def base(self) -> Path:
        return self.path.parent


def config_path() -> Path:
    configured = os.environ.get("LANGGRAPH_CONFIG")
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise ConfigError(f"LANGGRAPH_CONFIG={configured}: no such file")
        return path.resolve()
    for candidate in (Path.cwd() / "langgraph.json", Path("/app/langgraph.json")):
        if candidate.is_file():
            return candidate.resolve()
    raise ConfigError("langgraph.json not found (set LANGGRAPH_CONFIG)")


def _env(value: Any, base: Path) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, str):
        from dotenv import dotenv_values

        path = base / value
        # A missing env file is not an error: `.env` is git-ignored and absent in images.
        return {k: v for k, v in dotenv_values(path).items() if v is not None} if path.is_file() else {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    raise ConfigError("langgraph.json env: a file name or a mapping of names to values")


def load_config(path: Path | None = None) -> Config:
    """Read and check langgraph.json (raises ConfigError with one line)."""
    path = path or config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a JSON object")
    unserved = unserved_keys(data)
    if unserved:
        raise ConfigError(f"{path}: {unserved[0]}")
    graphs = []
    for graph_id, spec in (data.get("graphs") or {}).items():
        if isinstance(spec, dict):
            location, description = spec.get("path"), spec.get("description")
        else:
            location, description = spec, None
        if not isinstance(location, str) or not location.strip():
            raise ConfigError(f"{path}: graphs.{graph_id}: expected 'path/file.py:attr' or 'module:attr'")
        graphs.append(GraphSpec(graph_id, location, description))
    if not graphs:
        raise ConfigError(f"{path} declares no graphs")
    try:
        http = Http.from_config(data.get("http"))
        auth = _auth(data.get("auth"))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return Config(
        path=path, graphs=tuple(graphs), env=_env(data.get("env"), path.parent),
        dependencies=tuple(d for d in data.get("dependencies") or () if isinstance(d, str)),
        store=dict(data.get("store") or {}), checkpointer=dict(data.get("checkpointer") or {}),
        http=http,
        webhooks=data.get("webhooks") or {},
        auth=auth,
    )


# langgraph.json `auth` keys served (auth/handlers.py); `disable_studio_auth` is accepted either way:
# this server has no LangSmith sign-in for Studio to bypass the handlers with, so Studio's
# requests always go through them (what true asks for).
AUTH_KEYS = {"path": str, "disable_studio_auth": bool, "openapi": dict}
AUTH_REFUSED = {
    "cache": "caching of authentication decisions",
    "allow_langsmith_api_keys": "LangSmith API keys beside custom auth",
}


def _auth(auth: Any) -> dict[str, Any]:
    """langgraph.json `auth`, checked (ConfigError naming the key)."""
    if auth is None:
        return {}
    if not isinstance(auth, dict):
        raise ConfigError("auth: an object with path ('./auth.py:auth')")
    for key, value in auth.items():
        if key in AUTH_REFUSED:
            if value not in (None, False, {}, []):
                raise ConfigError(f"auth.{key}: {AUTH_REFUSED[key]} is not served by "
                                  "agentgen-runtime; remove it: refusing to start without it")
            continue
        kind = AUTH_KEYS.get(key)
        if kind is None:
            raise ConfigError(f"auth.{key}: unknown (known: {', '.join([*AUTH_KEYS, *AUTH_REFUSED])})")
        if value is not None and not isinstance(value, kind):
            raise ConfigError(f"auth.{key}: expected {kind.__name__}")
    return {k: v for k, v in auth.items() if k in AUTH_KEYS and v is not None}


# What langgraph.json can say that changes how the server behaves but this runtime does not serve:
# refused at start-up (fail closed: a setting silently ignored is a surprise in production).
# Build-time keys (python_version, dockerfile_lines, pip_config_file, ...) are
# the image's business and are not listed.
UNSERVED = {
    "ui": "generative UI components",
}
# http options served (the Platform's names); disable_ui and disable_mcp switch off what this
# runtime does not serve anyway.
ROUTE_SWITCHES = ("disable_assistants", "disable_threads", "disable_runs", "disable_store",
                  "disable_meta", "disable_webhooks", "disable_ui", "disable_mcp")
SERVED_HTTP = {"app", "cors", "mount_prefix", "configurable_headers", "logging_headers",
               "enable_custom_route_auth", "middleware_order", *ROUTE_SWITCHES}
MIDDLEWARE_ORDERS = ("auth_first", "middleware_first")


@dataclass(frozen=True)
class HeaderPatterns:
    """langgraph.json http.configurable_headers (which request headers a run's config gets, under
    `configurable`) and http.logging_headers (which ones the access log line shows), by their
    lower-case names. Patterns are literals with `*` wildcards. Credentials are never admitted,
    whatever the patterns say: the caller asks `credentials.Credentials` too."""
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def admits(self, name: str) -> bool:
        import fnmatch

        def matched(patterns: tuple[str, ...]) -> bool:
            # `*` only: other glob characters are literal here, as the Platform reads them
            return any(fnmatch.fnmatchcase(name, p.replace("[", "[[]").replace("?", "[?]"))
                       for p in patterns)

        return not matched(self.exclude) and matched(self.include)
CORS_KEYS = {"allow_origins": list, "allow_methods": list, "allow_headers": list,
             "allow_credentials": bool, "allow_origin_regex": str, "expose_headers": list,
             "max_age": int}


@dataclass(frozen=True)
class Http:
    """langgraph.json `http`, checked: what the server mounts and how."""
    app: str | None = None
    disabled: frozenset[str] = frozenset()  # "assistants", "threads", "runs", ...
    cors: dict[str, Any] | None = None
    mount_prefix: str = ""
    configurable_headers: HeaderPatterns | None = None
    logging_headers: HeaderPatterns | None = None
    custom_route_auth: bool = False  # enable_custom_route_auth: authentication on http.app's routes
    middleware_order: str = "middleware_first"

    @classmethod
    def from_config(cls, http: Any) -> Http:
        """Raises ConfigError naming the key for a value this runtime cannot honour."""
        if http is None:
            return cls()
        if not isinstance(http, dict):
            raise ConfigError("http: an object")
        for switch in (*ROUTE_SWITCHES, "enable_custom_route_auth"):
            if not isinstance(http.get(switch, False), bool):
                raise ConfigError(f"http.{switch}: true or false")
        order = http.get("middleware_order") or "middleware_first"
        if order not in MIDDLEWARE_ORDERS:
            raise ConfigError(f"http.middleware_order: {order!r}: one of {', '.join(MIDDLEWARE_ORDERS)}")
        headers = _header_patterns("configurable_headers", http.get("configurable_headers"))
        logged = _header_patterns("logging_headers", http.get("logging_headers"))
        cors = http.get("cors")
        if cors is not None:
            if not isinstance(cors, dict):
                raise ConfigError("http.cors: an object")
            for key, value in cors.items():
                kind = CORS_KEYS.get(key)
                if kind is None:
                    raise ConfigError(f"http.cors.{key}: unknown (known: {', '.join(CORS_KEYS)})")
                if not isinstance(value, kind) or (kind is list and not all(
                        isinstance(v, str) for v in value)):
                    raise ConfigError(f"http.cors.{key}: expected {kind.__name__}"
                                      + (" of strings" if kind is list else ""))
        prefix = http.get("mount_prefix") or ""
        if prefix and (not isinstance(prefix, str) or not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", prefix)):
            raise ConfigError(f"http.mount_prefix: {prefix!r}: a path that starts with / and does not "
                              "end with one, e.g. /api or /api/v1")
        app = http.get("app")
        return cls(app=app if isinstance(app, str) else None,
                   disabled=frozenset(s.removeprefix("disable_") for s in ROUTE_SWITCHES if http.get(s)),
                   cors=cors, mount_prefix=prefix, configurable_headers=headers,
                   logging_headers=logged,
                   custom_route_auth=bool(http.get("enable_custom_route_auth")),
                   middleware_order=order)


def _header_patterns(option: str, value: Any) -> HeaderPatterns | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"http.{option}: an object with include and exclude lists")
    lists: dict[str, tuple[str, ...]] = {"include": (), "exclude": ()}
    for key, patterns in value.items():
        name = {"include": "include", "includes": "include", "exclude": "exclude",
                "excludes": "exclude"}.get(key)
        if name is None:
            raise ConfigError(f"http.{option}.{key}: unknown (known: include, exclude)")
        if patterns is None:
            continue
        if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
            raise ConfigError(f"http.{option}.{key}: a list of header names (with * wildcards)")
        lists[name] += tuple(p.lower() for p in patterns)
    return HeaderPatterns(**lists)


def unserved_keys(data: dict[str, Any]) -> list[str]:
    """One line per langgraph.json setting this runtime would not honour."""
    problems = [f"{key}: {what} are not served by agentgen-runtime; remove the key (or serve the "
                "project with a server that supports it): refusing to start without it"
                for key, what in UNSERVED.items() if data.get(key)]
    try:
        _auth(data.get("auth"))
    except ConfigError as exc:
        problems.append(f"{exc}")
    http = data.get("http")
    if isinstance(http, dict):
        served = ", ".join(sorted(SERVED_HTTP))
        problems += [f"http.{key}: not served by agentgen-runtime (it serves {served}); remove it: "
                     "refusing to start without it"
                     for key, value in http.items() if key not in SERVED_HTTP and value not in
                     (None, False, [], {})]
    return problems


def apply(config: Config) -> None:
    """Before graphs are imported: `env` into the environment, local dependencies importable."""
    for name, value in config.env.items():
        os.environ.setdefault(name, value)
    for dependency in config.dependencies:
        if dependency.startswith((".", "/")):
            directory = (config.base / dependency).resolve()
            for candidate in (directory / "src", directory):
                if candidate.is_dir() and str(candidate) not in sys.path:
                    sys.path.append(str(candidate))


def import_object(location: str, base: Path) -> Any:
    """`./path/file.py:attr` (imported as its installed module when it is one, so that the package's
    own relative imports work) or `package.module:attr`."""
    import importlib
    import importlib.util

    module_part, _, attribute = location.partition(":")
    if module_part.endswith(".py"):
        file = (base / module_part).resolve()
        if file.is_file():
            module = _installed_module(file) or _load_file(file)
        else:
            # An image installs the project's package and ships langgraph.json without the source
            # tree: ./src/pkg/graph.py is then the installed module pkg.graph.
            module = _module_for_path(module_part)
            if module is None:
                raise ConfigError(f"{location}: no such file {file} (nor an installed module)")
    else:
        module = importlib.import_module(module_part)
    name = attribute or "graph"
    try:
        return getattr(module, name)
    except AttributeError:
        raise ConfigError(f"{location}: {module.__name__} has no attribute {name!r}") from None


def _installed_module(file: Path) -> Any:
    """The module that `file` is when it is importable under a dotted name (e.g. src/pkg/graph.py
    installed as pkg.graph)."""
    import importlib
    import importlib.util

    parts = file.with_suffix("").parts
    for start in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[start:])
        if not all(p.isidentifier() for p in parts[start:]):
            break
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.origin and Path(spec.origin).resolve() == file:
            return importlib.import_module(name)
    return None


def _module_for_path(relative: str) -> Any:
    import importlib
    import importlib.util

    parts = [p for p in Path(relative).with_suffix("").parts if p not in {".", ".."}]
    if parts and parts[0] == "src":
        parts = parts[1:]
    for start in range(len(parts)):
        name = ".".join(parts[start:])
        if not all(p.isidentifier() for p in parts[start:]):
            continue
        try:
            if importlib.util.find_spec(name) is not None:
                return importlib.import_module(name)
        except (ImportError, ValueError):
            continue
    return None


def _load_file(file: Path) -> Any:
    import importlib.util

    name = file.stem if file.stem.isidentifier() else "graph_module"
    if str(file.parent) not in sys.path:
        sys.path.append(str(file.parent))  # its sibling modules import as top-level modules
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up here
    spec.loader.exec_module(module)
    return module
