#!/usr/bin/env sh
# Back up the checkpoint database: pg_dump | gzip into ${1:-./backups}, keeping ${KEEP_DAYS:-14} days of
# dumps. Reads the service's settings (DATABASE_URL or DATABASE_*, and the secrets directory).
set -eu
cd "$(dirname "$0")/.."
dir="${1:-./backups}"
mkdir -p "$dir"
# Dumps hold the agent's data: never committed, whatever the repository's own .gitignore says.
[ -f "$dir/.gitignore" ] || printf '*\n' > "$dir/.gitignore"
exec agentgen-runtime maintenance backup --dir "$dir" --keep-days "${KEEP_DAYS:-14}"
