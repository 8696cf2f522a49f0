"""Secret values: files in the secrets directory, and a secret store read at start-up.

A store is used when it is configured (by the environment, `.env` or the secrets directory):
`VAULT_ADDR` (+ `VAULT_TOKEN`, `VAULT_MOUNT`, `VAULT_PATH`): a Vault/OpenBao KV v2 secret;
`AWS_SECRET_ID` (+ `AWS_REGION`, `AWS_ENDPOINT_URL`): an AWS Secrets Manager secret. Either holds one
JSON object whose keys are setting names (`database_url`, `api_keys`, ...) or the agent's own keys
(`openai_api_key`, ...). Values set locally take precedence. A configured store that cannot be read
stops start-up with one line: running without the values would only fail later, less clearly.

`export_agent_secrets` puts the agent's keys (the known providers', plus `agent_secrets`) into the
process environment before graphs are imported, so agent code that reads `os.environ` finds them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

log = logging.getLogger(__name__)

# Environment variables LangChain integrations and LangSmith read.
AGENT_KEYS = (
    "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AZURE_OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY",
    "MISTRAL_API_KEY", "GROQ_API_KEY", "COHERE_API_KEY", "FIREWORKS_API_KEY", "TOGETHER_API_KEY",
    "DEEPSEEK_API_KEY", "XAI_API_KEY", "TAVILY_API_KEY", "EXA_API_KEY", "LANGSMITH_API_KEY",
    "LANGCHAIN_API_KEY",
)


class SecretSourceError(RuntimeError):
    """The configured secret store could not be read."""


_STORE: dict[tuple[str, ...], dict[str, str]] = {}  # read once per process and configuration


def _plain(value: Any) -> Any:
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


def _read_vault(url: str, token: str, mount: str, path: str) -> dict[str, Any]:
    try:
        import hvac
        import requests
    except ImportError:
        raise SecretSourceError("VAULT_ADDR is set but hvac is not installed "
                                "(install agentgen-runtime[vault])") from None
    client = hvac.Client(url=url, token=token, timeout=10)
    try:
        response = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=mount, raise_on_deleted_version=True)
    except (hvac.exceptions.VaultError, requests.RequestException) as exc:
        raise SecretSourceError(f"cannot read Vault secret {mount}/{path} at {url}: "
                                f"{type(exc).__name__}: {exc}".strip()) from None
    return response["data"]["data"]


def _read_aws(secret_id: str, region: str | None, endpoint: str | None) -> dict[str, Any]:
    try:
        import boto3
    except ImportError:
        raise SecretSourceError("AWS_SECRET_ID is set but boto3 is not installed "
                                "(install agentgen-runtime[aws])") from None
    try:
        client = boto3.client("secretsmanager", region_name=region, endpoint_url=endpoint)
        text = client.get_secret_value(SecretId=secret_id)["SecretString"]
        data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - botocore raises many unrelated types
        raise SecretSourceError(f"cannot read AWS secret {secret_id}: {type(exc).__name__}: {exc}") from None
    if not isinstance(data, dict):
        raise SecretSourceError(f"AWS secret {secret_id} is not a JSON object")
    return data


def read_store(known: dict[str, Any]) -> dict[str, str]:
    """The configured store's values (lower-case keys), {} when none is configured."""
    if known.get("vault_addr"):
        if not known.get("vault_token"):
            raise SecretSourceError("vault_addr is set but vault_token is missing "
                                    "(put it in the secrets directory as a file named vault_token)")
        key = ("vault", known["vault_addr"], known.get("vault_mount") or "secret",
               known.get("vault_path") or "agent")
        if key not in _STORE:
            _STORE[key] = _read_vault(key[1], known["vault_token"], key[2], key[3])
    elif known.get("aws_secret_id"):
        key = ("aws", known["aws_secret_id"], known.get("aws_region") or "",
               known.get("aws_endpoint_url") or "")
        if key not in _STORE:
            _STORE[key] = _read_aws(key[1], key[2] or None, key[3] or None)
    else:
        return {}
    return {str(k).lower(): "" if v is None else str(v) for k, v in _STORE[key].items()}


class StoreSource(PydanticBaseSettingsSource):
    """The secret store as the lowest-priority settings source."""

    def __init__(self, settings_cls: type[BaseSettings],
                 local: tuple[PydanticBaseSettingsSource, ...]) -> None:
        super().__init__(settings_cls)
        self._local = local

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        known: dict[str, Any] = {}
        for source in reversed(self._local):
            known.update({k.lower(): _plain(v) for k, v in source().items()})
        data = read_store(known)
        fields = set(self.settings_cls.model_fields)
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name in fields and name not in known:
                field = self.settings_cls.model_fields[name]
                # complex settings (lists, dicts) are JSON in a store, as in the environment
                values[name] = (self.decode_complex_value(name, field, value)
                                if self.field_is_complex(field) else value)
        return values


def _secret_file(directory: Path | None, name: str) -> str | None:
    if directory is None:
        return None
    for candidate in (name.lower(), name):
        path = directory / candidate
        if path.is_file():
            return path.read_text(encoding="utf-8").strip()
    return None


def export_agent_secrets(settings: Any, directory: Path | None,
                         extra: Iterable[str] = ()) -> list[str]:
    """Put the agent's keys found in the secret sources into os.environ (values already in the
    environment win). Returns the names exported (never the values)."""
    known = {k: _plain(v) for k, v in settings.model_dump().items()}
    store = read_store(known)
    exported = []
    for name in dict.fromkeys([*AGENT_KEYS, *(n.upper() for n in settings.agent_secrets), *extra]):
        if os.environ.get(name):
            continue
        value = _secret_file(directory, name) or store.get(name.lower())
        if value:
            os.environ[name] = value
            exported.append(name)
    if exported:
        log.info("agent secrets placed in the environment: %s", ", ".join(exported))
    return exported
