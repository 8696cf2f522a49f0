"""The agent's settings (the sample graph's chat model).

Read from, highest priority first: the environment, `.env`, and files in the secrets directory
(`SECRETS_DIR`, default `/run/secrets`; one value per file named after the setting in lower case).
Under agentgen-runtime the provider keys also come from the secret store the server reads
(Vault/OpenBao, AWS Secrets Manager): it places them in the environment before this module loads.
The server's own settings (database, workers, API keys, limits) are agentgen-runtime's: see
runtime/README.md and .env.example.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRETS_DIR = "/run/secrets"


def secrets_dir() -> Path | None:
    """The secrets directory ($SECRETS_DIR, default /run/secrets), if it exists."""
    path = Path(os.environ.get("SECRETS_DIR", DEFAULT_SECRETS_DIR))
    return path if path.is_dir() else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # Chat model.
    llm_provider: Literal["openai", "anthropic", "fake"] = "fake"
    llm_model: str = "echo"
    llm_temperature: float = Field(0.0, ge=0, le=2)
    llm_timeout_seconds: float = Field(60.0, gt=0)
    llm_fake_latency_seconds: float = Field(0.0, ge=0, description="Simulated latency of `fake`")
    openai_api_key: SecretStr | None = None
    anthropic_api_key: SecretStr | None = None


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return Settings(_secrets_dir=secrets_dir())
