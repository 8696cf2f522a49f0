"""Service settings.

Read from, highest priority first: the environment, `.env`, files in the secrets directory
(Docker/Kubernetes secrets mounted as files, one value per file named after the field),
and an AWS Secrets Manager secret read at start-up.

Defaults come from the `medium` scale preset chosen when the project was generated.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

DEFAULT_SECRETS_DIR = "/run/secrets"


def secrets_dir() -> Path | None:
    """The secrets directory ($SECRETS_DIR, default /run/secrets), if it exists."""
    path = Path(os.environ.get("SECRETS_DIR", DEFAULT_SECRETS_DIR))
    return path if path.is_dir() else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # PostgreSQL: either a full URL, or its parts (the password from the secrets directory).
    database_url: SecretStr | None = None
    database_host: str = "localhost"
    database_port: int = 5432
    database_name: str = "sales_agent"
    database_user: str = "sales_agent"
    database_password: SecretStr | None = None
    db_pool_size: int = Field(15, ge=1)
    db_pool_overflow: int = Field(30, ge=0)
    db_connect_timeout: float = Field(5.0, gt=0)

    # Redis (rate limiting shared across replicas).
    redis_enabled: bool = True
    redis_url: SecretStr = SecretStr("redis://localhost:6379/0")

    # Chat model.
    llm_provider: Literal["openai", "anthropic", "fake"] = "openai"
    llm_model: str = "gpt-4o-mini"
    llm_temperature: float = Field(0.0, ge=0, le=2)
    llm_max_iterations: int = Field(10, ge=1, description="LangGraph recursion limit per run")
    llm_timeout_seconds: float = Field(60.0, gt=0)
    llm_fake_latency_seconds: float = Field(0.0, ge=0, description="Simulated latency of `fake`")
    openai_api_key: SecretStr | None = None
    anthropic_api_key: SecretStr | None = None

    # HTTP server.
    # Inside a container all interfaces; the published port decides who can connect.
    host: str = "0.0.0.0"  # noqa: S104
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(2, ge=1)
    cors_origins: list[str] = []
    api_key_header: str = "X-API-Key"
    api_keys: SecretStr | None = Field(None, description="Comma-separated API keys")
    rate_limit_per_minute: int = Field(120, ge=1)
    max_request_bytes: int = Field(1_048_576, ge=1024)
    run_timeout_seconds: float = Field(120.0, gt=0)
    # When checkpoints reach PostgreSQL: "sync" before each next step (safest, slowest), "async"
    # while the next step runs (a crash can lose the last step), "exit" once when the run ends
    # (fastest; a crash mid-run loses the whole run, a finished run is always durable).
    checkpoint_durability: Literal["sync", "async", "exit"] = "exit"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_enabled: bool = True

    # Observability. Prices in USD per million tokens, [input, output], by model name.
    llm_prices: dict[str, tuple[float, float]] = {
        "gpt-4o-mini": (0.15, 0.60),
        "gpt-4o": (2.50, 10.0),
        "claude-3-5-haiku-latest": (0.80, 4.0),
        "claude-3-5-sonnet-latest": (3.0, 15.0),
        "echo": (0.0, 0.0),
    }
    langsmith_tracing: bool = False
    langsmith_api_key: SecretStr | None = None
    langsmith_project: str = "sales-agent"
    sentry_dsn: SecretStr | None = None

    # AWS Secrets Manager (read at start-up; credentials from the usual AWS chain).
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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        local = (init_settings, env_settings, dotenv_settings, file_secret_settings)
        from .secret_sources import remote_source

        return (*local, remote_source(settings_cls, local))


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return Settings(_secrets_dir=secrets_dir())
