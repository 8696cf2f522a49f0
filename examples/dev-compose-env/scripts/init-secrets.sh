#!/usr/bin/env sh
# Create ./secrets for docker compose: one file per secret value, never committed (.gitignore).
# The directory is private to you (0700); the files are readable (0644) so that the container's
# unprivileged user can read its bind-mounted copies.
set -eu
cd "$(dirname "$0")/.."
umask 022
mkdir -p secrets
chmod 700 secrets
# Never committed, whatever the repository's own .gitignore says.
[ -f secrets/.gitignore ] || printf '*\n' > secrets/.gitignore

if [ ! -s secrets/api_keys ]; then
    # Clients send it in the X-API-Key header; add more keys comma-separated.
    python3 -c 'import secrets; print(secrets.token_urlsafe(32), end="")' > secrets/api_keys
    echo "created secrets/api_keys (one random key: clients send it as X-API-Key)"
fi
if [ ! -s secrets/database_password ]; then
    python3 -c 'import secrets; print(secrets.token_urlsafe(32), end="")' > secrets/database_password
    echo "created secrets/database_password (random)"
fi
if [ ! -s secrets/webhook_secret ]; then
    # Signs the webhooks runs and crons send (Standard Webhooks); your receivers verify with it.
    python3 -c 'import base64, secrets; print("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(), end="")' > secrets/webhook_secret
    echo "created secrets/webhook_secret (random: give it to your webhook receivers)"
fi
[ -f .env ] || { cp .env.example .env && echo "created .env from .env.example"; }
