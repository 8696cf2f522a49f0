"""`agentgen-runtime [COMMAND]` (or `python -m agentgen_runtime`): the image's entry point.

  serve (default)   the API under uvicorn (host, port, workers from the settings)
  maintenance ...   database chores (see maintenance.py): migrate, cleanup, backup
  doctor            check the environment, one line per problem
  graphs            import every graph of langgraph.json, one line each (no database needed)
  healthcheck [URL] exit 0 when URL (default: this container's /health) answers 200
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any


def _startup_problem() -> str | None:
    """What would stop the server from starting, as one line (checked before workers start)."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from .auth.keys import ApiKeys, AuthConfigError
    from .config import ConfigError, load_config
    from .secrets import SecretSourceError
    from .settings import get_settings

    try:
        settings = get_settings()
        if settings.metrics_enabled and settings.metrics_port == settings.port:
            return (f"setting metrics_port: {settings.metrics_port} is the API's port; metrics are "
                    "served on a port of their own")
        config = load_config()
        ApiKeys(settings, custom_auth=bool(config.auth.get("path")))
        # every graph imported as the server will (secrets and env applied): a module that fails
        # at import is one line here, not a traceback from the application's start-up; the same
        # for the custom auth handlers
        from .app import prepare
        from .auth.handlers import Handlers
        from .graphs import load_graphs

        prepare(settings, config)
        Handlers.load(config)
        asyncio.run(load_graphs(config))
        if config.store.get("index"):
            from .db import lacks_extension

            if asyncio.run(lacks_extension(settings, "vector")):  # (None: the database is down now)
                return ("langgraph.json store.index: semantic search needs PostgreSQL's pgvector "
                        "extension, which this database server does not have: install it there "
                        "(Debian/Ubuntu: postgresql-<version>-pgvector; containers: the "
                        "pgvector/pgvector image) or remove store.index")
    except ValidationError as exc:
        return "; ".join(f"setting {'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                         for e in exc.errors())
    except (AuthConfigError, ConfigError, SecretSourceError) as exc:
        return str(exc)
    except UnicodeDecodeError:
        return _undecodable_secret()
    except SettingsError as exc:  # a secret file pydantic-settings could not read
        if isinstance(exc.__cause__ or exc.__context__, UnicodeDecodeError):
            return _undecodable_secret()
        return " ".join(str(exc).split())
    return None


def listen_host(settings: Any) -> str:
    """HOST, or 127.0.0.1 when the server authenticates nobody (unless UNAUTHENTICATED_REMOTE)."""
    import ipaddress

    from .config import load_config

    if settings.api_key_list() or settings.unauthenticated_remote or load_config().auth.get("path"):
        return settings.host
    try:
        if ipaddress.ip_address(settings.host).is_loopback:
            return settings.host
    except ValueError:
        if settings.host == "localhost":
            return settings.host
    return "127.0.0.1"


def _undecodable_secret() -> str:
    """The secret file that is not UTF-8 text (pydantic's error does not say which)."""
    from .settings import secrets_dir

    directory = secrets_dir()
    for path in sorted(directory.iterdir()) if directory is not None and directory.is_dir() else ():
        try:
            if path.is_file():
                path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            return f"secret file {path}: not UTF-8 text"
        except OSError:
            continue
    return "a secret or setting is not UTF-8 text"


def serve() -> int:
    import os
    import shutil
    import tempfile

    import uvicorn

    from .settings import get_settings

    problem = _startup_problem()
    if problem:
        print(f"agentgen-runtime: {problem}", file=sys.stderr)
        return 1
    settings = get_settings()
    host = listen_host(settings)
    if host != settings.host:
        print(f"agentgen-runtime: no authentication (AUTH_REQUIRED=false, no api_keys, no auth.path): "
              f"listening on {host} only, not HOST={settings.host} (UNAUTHENTICATED_REMOTE=true to "
              "serve it there anyway)", file=sys.stderr)
    if settings.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Several worker processes: their metrics are aggregated through files (prometheus-client).
        directory = os.path.join(tempfile.gettempdir(), f"prometheus-multiproc-{os.getpid()}")
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    if settings.metrics_enabled:
        from .observability import start_metrics_server

        try:
            start_metrics_server(settings.host, settings.metrics_port)
        except OSError as exc:
            print(f"agentgen-runtime: setting metrics_port: cannot listen on {settings.host}:"
                  f"{settings.metrics_port} ({exc.strerror or exc})", file=sys.stderr)
            return 1
    uvicorn.run(
        "agentgen_runtime.app:create_app",
        factory=True,
        host=host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level.lower(),
        log_config=None,  # the app logs JSON (observability.configure_logging)
        proxy_headers=True,
        ws_max_size=settings.max_request_bytes + 1024,  # a frame is held to a body's limit (+ framing)
        # SIGTERM: runs get shutdown_grace_seconds, then go back to the queue and the requests
        # waiting on them are closed (their clients reconnect to another replica); keep
        # terminationGracePeriodSeconds above this.
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) + 5,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command, rest = (args[0], args[1:]) if args else ("serve", [])
    if command == "serve":
        return serve()
    if command == "maintenance":
        from .maintenance import main as maintenance

        return maintenance(rest)
    if command == "doctor":
        from .doctor import main as doctor

        return doctor()
    if command == "graphs":
        from .graphs import check_graphs

        return check_graphs()
    if command == "healthcheck":
        from .healthcheck import main as healthcheck

        return healthcheck(rest)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
