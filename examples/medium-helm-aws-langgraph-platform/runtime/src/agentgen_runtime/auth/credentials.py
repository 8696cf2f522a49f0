"""The one rule for credentials: what authenticates a request never enters a run (its config, so
neither its row, its checkpoints nor its webhook), nor a log line, whatever langgraph.json's
`http.configurable_headers` / `http.logging_headers` patterns say.

A credential header is one of: `authorization`, `proxy-authorization`, `cookie`, the API key's
header (`API_KEY_HEADER`, `x-api-key` by default, and `x-api-key` always), the Platform's own
`x-service-key` / `x-tenant-id`, and every header a custom auth handler (langgraph.json
`auth.path`) read by name while authenticating (through its `headers` or `request` parameter):
learned by this process the first time a handler reads it, before any run of that request is
created (a handler reading the raw ASGI `scope` is not seen: name such headers in
`http.configurable_headers.exclude`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.datastructures import Headers

ALWAYS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key", "x-service-key",
                    "x-tenant-id"})


class Credentials:
    """The credential header names of this process (lower case)."""

    def __init__(self, key_header: str = "x-api-key") -> None:
        self.fixed = ALWAYS | {key_header.lower()}
        self.learned: set[str] = set()

    def learn(self, names: Iterable[str]) -> None:
        self.learned.update(n.lower() for n in names)

    def secret(self, name: str) -> bool:
        name = name.lower()
        return name in self.fixed or name in self.learned

    def recording_headers(self, scope: Any) -> RecordingHeaders:
        return RecordingHeaders(scope=scope, seen=self.learned)

    def recording_dict(self, raw: Iterable[tuple[bytes, bytes]]) -> RecordingDict:
        found = RecordingDict(raw)
        found.seen = self.learned
        return found


class RecordingHeaders(Headers):
    """A request's headers that remember every name read (a custom auth handler's `request`)."""

    def __init__(self, *, scope: Any, seen: set[str]) -> None:
        super().__init__(scope=scope)
        self._seen = seen

    def __getitem__(self, key: str) -> str:
        self._seen.add(key.lower())
        return super().__getitem__(key)

    def __contains__(self, key: Any) -> bool:
        if isinstance(key, str):
            self._seen.add(key.lower())
        return super().__contains__(key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self._seen.add(key.lower())
        return super().get(key, default)

    def getlist(self, key: str) -> list[str]:
        self._seen.add(key.lower())
        return super().getlist(key)


class RecordingDict(dict):
    """The raw `headers` a custom auth handler is given (bytes names, as the Platform gives them),
    remembering every name read."""

    seen: set[str]

    def _note(self, key: Any) -> None:
        if isinstance(key, bytes):
            key = key.decode("latin-1")
        if isinstance(key, str):
            self.seen.add(key.lower())

    def __getitem__(self, key: Any) -> Any:
        self._note(key)
        return super().__getitem__(key)

    def __contains__(self, key: Any) -> bool:
        self._note(key)
        return super().__contains__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._note(key)
        return super().get(key, default)
