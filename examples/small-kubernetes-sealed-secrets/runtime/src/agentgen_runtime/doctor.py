"""`agentgen-runtime doctor`: check the environment before (or instead of) starting the server.

Prints one line per problem and exits 1 when there is any: settings that do not parse, a secret
store that cannot be read, API keys missing while required (and no custom auth), langgraph.json, a
graph or the custom auth handlers (auth.path) that do not load, PostgreSQL or Redis unreachable.
"""

from __future__ import annotations

import asyncio
import sys

from pydantic import ValidationError

from .settings import Settings, load_settings

TIMEOUT_SECONDS = 3


def _load() -> tuple[Settings | None, list[str]]:
    try:
        return load_settings(), []
    except ValidationError as exc:
        return None, [f"setting {'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                      for e in exc.errors()]
    except Exception as exc:  # noqa: BLE001 - a secret store failure, reported as one line
        return None, [f"settings: {exc}"]


def _required(settings: Settings) -> list[str]:
    problems = []
    if settings.auth_required and not settings.api_key_list() and not _custom_auth():
        problems.append("api_keys is not set (secrets file api_keys, comma-separated), "
                        "and AUTH_REQUIRED is true")
    if settings.database_url is None and settings.database_password is None:
        problems.append("database_password (or database_url) is not set")
    return problems


def _custom_auth() -> bool:
    """Whether langgraph.json names custom auth handlers (they authenticate instead of keys)."""
    from .config import ConfigError, load_config

    try:
        return bool(load_config().auth.get("path"))
    except ConfigError:
        return False  # (reported by _graphs)


def _graphs(settings: Settings) -> list[str]:
    from .app import prepare
    from .auth.handlers import Handlers
    from .config import ConfigError
    from .graphs import load_graphs

    try:
        config = prepare(settings)
        asyncio.run(load_graphs(config))
    except Exception as exc:  # noqa: BLE001 - any import failure of the user's graphs, in one line
        return [f"graphs: {type(exc).__name__}: {' '.join(str(exc).split())}"]
    try:
        Handlers.load(config)
    except ConfigError as exc:
        return [str(exc)]
    return []


def _postgres(settings: Settings) -> list[str]:
    import psycopg

    try:
        with psycopg.connect(settings.database_conninfo(), connect_timeout=TIMEOUT_SECONDS) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return [f"postgres unreachable: {' '.join(str(exc).split())}"]
    return []


def _redis(settings: Settings) -> list[str]:
    if not settings.redis_enabled:
        return []
    import redis

    try:
        redis.Redis.from_url(settings.redis_url.get_secret_value(),
                             socket_timeout=TIMEOUT_SECONDS).ping()
    except redis.RedisError as exc:
        return [f"redis unreachable: {exc}"]
    return []


def diagnose() -> list[str]:
    settings, problems = _load()
    if settings is None:
        return problems
    return _required(settings) + _graphs(settings) + _postgres(settings) + _redis(settings)


def main() -> int:
    problems = diagnose()
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if not problems:
        print("ok: settings, secrets, graphs and databases are ready")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
