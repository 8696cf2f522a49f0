"""The server's settings.

Read from, highest priority first: the environment, `.env` (in the working directory), files in the
secrets directory (`SECRETS_DIR`, from the environment or `.env`, default `/run/secrets`: one value per
file named after the setting in lower case), and a secret store read at start-up when one is
configured (`VAULT_ADDR`: Vault/OpenBao KV v2; `AWS_SECRET_ID`: AWS Secrets Manager), see secrets.py.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_SECRETS_DIR = "/run/secrets"
ENV_FILE = ".env"


def _dotenv() -> dict[str, str | None]:
    from dotenv import dotenv_values

    return dict(dotenv_values(ENV_FILE)) if Path(ENV_FILE).is_file() else {}


def secrets_dir() -> Path | None:
    """The secrets directory ($SECRETS_DIR from the environment or `.env`, default /run/secrets),
    if it exists."""
    configured = os.environ.get("SECRETS_DIR") or _dotenv().get("SECRETS_DIR") or DEFAULT_SECRETS_DIR
    path = Path(configured)
    return path if path.is_dir() else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=ENV_FILE, env_file_encoding="utf-8", extra="ignore", case_sensitive=False,
        env_ignore_empty=True,  # an empty variable means "not set", not an empty value
    )

    # PostgreSQL: either a full URL, or its parts (the password from the secrets directory).
    database_url: SecretStr | None = None
    database_host: str = "localhost"
    database_port: int = 5432
    database_name: str = "postgres"
    database_user: str = "postgres"
    database_password: SecretStr | None = None
    db_pool_size: int = Field(5, ge=1)
    db_pool_overflow: int = Field(5, ge=0)
    db_connect_timeout: float = Field(5.0, gt=0)

    # Redis (rate limits shared by every replica). When it fails, limits fall back to this process.
    redis_enabled: bool = False
    redis_url: SecretStr = SecretStr("redis://localhost:6379/0")

    # HTTP server. Inside a container all interfaces; the published port decides who can connect.
    host: str = "0.0.0.0"  # noqa: S104
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1)
    cors_origins: list[str] = []
    api_key_header: str = "X-API-Key"
    api_keys: SecretStr | None = Field(None, description="Comma-separated API keys")
    auth_required: bool = Field(True, description="Refuse to start without api_keys when true")
    # A server that authenticates nobody (AUTH_REQUIRED=false, no keys, no custom auth) listens on
    # 127.0.0.1 only, whatever HOST says, unless this is true (on purpose: e.g. a trusted network
    # in front of it that authenticates).
    unauthenticated_remote: bool = False
    # Requests per minute per identity (the API key): usually one key per application backend, so
    # this is the whole application's budget (100 per second); lower it for keys given to clients.
    rate_limit_per_minute: int = Field(6000, ge=1)
    max_request_bytes: int = Field(1_048_576, ge=1024)
    # A run created with an Idempotency-Key: the same key and body within this window answers the
    # first request's run (never a second run); the same key with another body is a 422.
    idempotency_window_seconds: float = Field(86400.0, ge=1)
    # A resume (command.resume) that answers no interrupt waiting on the thread (it was answered
    # already, or never asked) is refused with 409 naming it. False: accepted and run, the value
    # dropped, as the Platform and `langgraph dev` do unless the client asks for strict_resume.
    strict_resume: bool = True
    # Crons: schedules firing more often than once a minute (a sixth, seconds field) are refused
    # unless allowed; each identity (API key, custom auth user) may hold at most this many.
    cron_allow_seconds: bool = False
    max_crons_per_owner: int = Field(100, ge=1)
    run_timeout_seconds: float = Field(120.0, gt=0)
    # The run engine (engine/runs.py): a run's lease is renewed every third of it; a run whose process
    # died is noticed within lease + lease/2 and resumed elsewhere, at most run_max_attempts times.
    run_lease_seconds: float = Field(15.0, ge=1, le=300)
    run_max_attempts: int = Field(3, ge=1)
    # A blocked event loop (blocking code in an async node) is logged, naming the graph and node,
    # once it has not turned for this long (metric agent_event_loop_stalls_total).
    loop_stall_warn_seconds: float = Field(1.0, gt=0)
    max_concurrent_runs: int = Field(10, ge=1, description="Runs one process executes at once")
    # SIGTERM: in-flight runs get this long to finish, then go back to the queue for another process
    # (keep terminationGracePeriodSeconds above it).
    shutdown_grace_seconds: float = Field(20.0, ge=0)
    recursion_limit: int = Field(25, ge=1, validation_alias=AliasChoices(
        "recursion_limit", "llm_max_iterations"), description="LangGraph recursion limit per run")
    # When checkpoints reach PostgreSQL, unless a run says (`durability`): "async" (the Platform's
    # default) each step, while the next one runs (a crash can lose the last step; the history
    # Studio shows has every step), "exit" once when the run ends (fastest; a crash mid-run starts
    # the run again from its input; one state per run in the history), "sync" before each next
    # step (safest, slowest).
    checkpoint_durability: Literal["sync", "async", "exit"] = "async"
    # Whose items the store API and the graphs' store reach: "key" (each API key its own, the
    # same from the API and from its runs) or "shared" (one store for every key, as LangGraph
    # Platform without custom auth).
    store_scope: Literal["key", "shared"] = "key"
    # How often expired threads (their own `ttl`) are swept, by whichever process gets there.
    thread_ttl_sweep_seconds: float = Field(60.0, gt=0)
    # Webhooks (surfaces/webhooks.py): signed with this Standard Webhooks secret (whsec_ and base64; without
    # it runs and crons with a webhook are refused), each call given this long, retried with
    # back-off up to this many attempts.
    webhook_secret: SecretStr | None = None
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=300)
    webhook_max_attempts: int = Field(5, ge=1, le=20)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_enabled: bool = True
    # Prometheus metrics are served on their own port (never the API's, so never through the API's
    # proxy or ingress): the scraper reaches it directly, the NetworkPolicy lets only it in. 0: a
    # free port the system picks (tests running several processes).
    metrics_port: int = Field(9464, ge=0, le=65535)
    # The interactive API docs (/docs, /redoc, /openapi.json) describe every route to whoever asks:
    # off unless asked for (the dev scale turns them on).
    docs_enabled: bool = False
    # Failed API-key attempts one client address may make per minute before it gets 429.
    auth_failures_per_minute: int = Field(30, ge=1)

    # The agent's own secrets: these names (besides the known providers' keys, secrets.AGENT_KEYS)
    # are looked up in the secret sources and placed in the environment before graphs load.
    agent_secrets: list[str] = []

    # Observability. Prices in USD per million tokens, [input, output], by model name.
    llm_prices: dict[str, tuple[float, float]] = {
        "gpt-4o-mini": (0.15, 0.60),
        "gpt-4o": (2.50, 10.0),
        "claude-3-5-haiku-latest": (0.80, 4.0),
        "claude-3-5-sonnet-latest": (3.0, 15.0),
        "echo": (0.0, 0.0),
    }
    sentry_dsn: SecretStr | None = None

    # Secret stores, read at start-up when configured.
    vault_addr: str | None = None
    vault_token: SecretStr | None = None
    vault_mount: str = "secret"
    vault_path: str = "agent"
    aws_secret_id: str | None = None
    aws_region: str | None = None
    aws_endpoint_url: str | None = None

    def database_conninfo(self) -> str:
        """libpq connection string: database_url, or one built from the parts."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        from psycopg.conninfo import make_conninfo

        password = self.database_password.get_secret_value() if self.database_password else None
        return make_conninfo(
            host=self.database_host, port=self.database_port, dbname=self.database_name,
            user=self.database_user, password=password,
            connect_timeout=int(self.db_connect_timeout),
        )

    def api_key_list(self) -> list[str]:
        """The keys of the api_keys secret: separated by commas, line breaks or spaces (a key
        never contains whitespace; one key per line is as common as a comma list)."""
        raw = self.api_keys.get_secret_value() if self.api_keys else ""
        return [key for key in re.split(r"[,\s]+", raw) if key]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        from .secrets import StoreSource

        local = (init_settings, env_settings, dotenv_settings, file_secret_settings)
        return (*local, StoreSource(settings_cls, local))


def load_settings(**overrides: Any) -> Settings:
    """Settings from every source (raises pydantic.ValidationError, secrets.SecretSourceError)."""
    return Settings(_secrets_dir=secrets_dir(), **overrides)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return load_settings()
