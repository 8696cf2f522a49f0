"""Settings read at start-up from AWS Secrets Manager.

The secret is one JSON object whose keys are settings field names (e.g. `database_url`,
`openai_api_key`); values set in the environment, `.env` or the secrets directory take precedence.
Failing to read a configured secret stops start-up with one clear line: running without the values
would only fail later, less clearly.
"""

from __future__ import annotations

from typing import Any

from pydantic_settings import (
    AWSSecretsManagerSettingsSource,
    BaseSettings,
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


def remote_source(settings_cls: type[BaseSettings],
                  local: tuple[PydanticBaseSettingsSource, ...]) -> PydanticBaseSettingsSource:
    known = _bootstrap(local)
    if not known.get("aws_secret_id"):
        return _Empty(settings_cls)
    try:
        source = AWSSecretsManagerSettingsSource(
            settings_cls, known["aws_secret_id"], region_name=known.get("aws_region"),
            endpoint_url=known.get("aws_endpoint_url"), case_sensitive=False)
        source()  # read now, so that a failure is reported here, in one line
    except Exception as exc:  # noqa: BLE001 - botocore raises many unrelated types
        raise SecretSourceError(f"cannot read AWS secret {known['aws_secret_id']}: "
                                f"{type(exc).__name__}: {exc}") from None
    return source


class _Empty(PydanticBaseSettingsSource):
    """No secret store configured (local development): contributes nothing."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return {}
