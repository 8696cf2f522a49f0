"""Settings read at start-up from Vault / OpenBao (KV version 2).

The secret is one JSON object whose keys are settings field names (e.g. `database_url`,
`openai_api_key`); values set in the environment, `.env` or the secrets directory take precedence.
Failing to read a configured secret stops start-up with one clear line: running without the values
would only fail later, less clearly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
)


class SecretSourceError(RuntimeError):
    """The configured secret store could not be read."""


def _plain(value: Any) -> Any:
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


def _bootstrap(local: tuple[PydanticBaseSettingsSource, ...]) -> dict[str, Any]:
    """What the local sources say (highest priority last), to find the secret store."""
    values: dict[str, Any] = {}
    for source in reversed(local):
        values.update({k.lower(): _plain(v) for k, v in source().items()})
    return values


class VaultSettingsSource(EnvSettingsSource):
    """A KV v2 secret, parsed like environment variables (so nested and typed fields work alike)."""

    def __init__(self, settings_cls: type[BaseSettings], *, url: str, token: str, mount: str,
                 path: str) -> None:
        self._url, self._token, self._mount, self._path = url, token, mount, path
        super().__init__(settings_cls, case_sensitive=False)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        import hvac
        import requests

        client = hvac.Client(url=self._url, token=self._token, timeout=10)
        try:
            response = client.secrets.kv.v2.read_secret_version(
                path=self._path, mount_point=self._mount, raise_on_deleted_version=True)
        except (hvac.exceptions.VaultError, requests.RequestException) as exc:
            raise SecretSourceError(
                f"cannot read Vault secret {self._mount}/{self._path} at {self._url}: "
                f"{type(exc).__name__}: {exc}".strip()) from None
        data = response["data"]["data"]
        return {str(k).lower(): None if v is None else str(v) for k, v in data.items()}


def remote_source(settings_cls: type[BaseSettings],
                  local: tuple[PydanticBaseSettingsSource, ...]) -> PydanticBaseSettingsSource:
    known = _bootstrap(local)
    if not known.get("vault_addr"):
        return _Empty(settings_cls)
    if not known.get("vault_token"):
        raise SecretSourceError("vault_addr is set but vault_token is missing "
                                "(put it in the secrets directory as a file named vault_token)")
    return VaultSettingsSource(
        settings_cls, url=known["vault_addr"], token=known["vault_token"],
        mount=known.get("vault_mount") or "secret", path=known.get("vault_path") or "research-agent")


class _Empty(PydanticBaseSettingsSource):
    """No secret store configured (local development): contributes nothing."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return {}
