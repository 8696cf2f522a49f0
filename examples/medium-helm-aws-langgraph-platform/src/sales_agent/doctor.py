"""`python -m <package>.doctor`: check the environment before (or instead of) starting the service.

Prints one line per problem and exits 1 when there is any: settings that do not parse, a secret
store that cannot be read, a required key missing, PostgreSQL or Redis unreachable.
"""

from __future__ import annotations

import sys

from pydantic import ValidationError

from .settings import Settings, secrets_dir

TIMEOUT_SECONDS = 3


def _load() -> tuple[Settings | None, list[str]]:
    try:
        return Settings(_secrets_dir=secrets_dir()), []
    except ValidationError as exc:
        return None, [f"setting {'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                      for e in exc.errors()]
    except Exception as exc:  # noqa: BLE001 - a secret store failure, reported as one line
        return None, [f"settings: {exc}"]


def _required_keys(settings: Settings) -> list[str]:
    problems = []
    key = {"openai": "openai_api_key", "anthropic": "anthropic_api_key"}.get(settings.llm_provider)
    if key and getattr(settings, key) is None:
        problems.append(f"{key} is required for llm_provider={settings.llm_provider} "
                        f"(environment variable {key.upper()} or secrets file {key})")
    if settings.database_url is None and settings.database_password is None:
        problems.append("database_password (or database_url) is not set")
    if settings.langsmith_tracing and settings.langsmith_api_key is None:
        problems.append("langsmith_api_key is required when langsmith_tracing is on")
    return problems


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
    return _required_keys(settings) + _postgres(settings) + _redis(settings)


def main() -> int:
    problems = diagnose()
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if not problems:
        print("ok: settings, secrets and databases are ready")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
