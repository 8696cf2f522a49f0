"""`python -m <package>`: serve the API with uvicorn (host, port and workers from the settings)."""

from __future__ import annotations

import uvicorn

from .settings import get_settings


def main() -> None:
    settings = get_settings()
    uvicorn.run(
        f"{__package__}.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
        # In-flight runs get this long to finish on SIGTERM (keep it under the pod's grace period).
        timeout_graceful_shutdown=int(settings.run_timeout_seconds),
    )


if __name__ == "__main__":
    main()
