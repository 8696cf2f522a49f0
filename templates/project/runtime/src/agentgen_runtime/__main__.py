"""`agentgen-runtime [COMMAND]` (or `python -m agentgen_runtime`): the image's entry point.

  serve (default)   the API under uvicorn (host, port, workers from the settings)
  maintenance ...   database chores (see maintenance.py): migrate, cleanup, backup
  doctor            check the environment, one line per problem
  graphs            import every graph of langgraph.json, one line each (no database needed)
  healthcheck [URL] exit 0 when URL (default: this container's /health) answers 200
"""

from __future__ import annotations

import sys


def _startup_problem() -> str | None:
    """What would stop the server from starting, as one line (checked before workers start)."""
    from pydantic import ValidationError

    from .auth import ApiKeys, AuthConfigError
    from .config import ConfigError, load_config
    from .secrets import SecretSourceError
    from .settings import get_settings

    try:
        ApiKeys(get_settings())
        load_config()
    except ValidationError as exc:
        return "; ".join(f"setting {'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                         for e in exc.errors())
    except (AuthConfigError, ConfigError, SecretSourceError) as exc:
        return str(exc)
    return None


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
    if settings.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Several worker processes: their metrics are aggregated through files (prometheus-client).
        directory = os.path.join(tempfile.gettempdir(), f"prometheus-multiproc-{os.getpid()}")
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    uvicorn.run(
        "agentgen_runtime.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level.lower(),
        log_config=None,  # the app logs JSON (observability.configure_logging)
        proxy_headers=True,
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
