#!/usr/bin/env sh
# Restore a dump made by scripts/backup.sh into the database named by $DATABASE_URL (which should be
# empty: the dump re-creates the tables). Usage: DATABASE_URL=postgresql://... scripts/restore.sh FILE
set -eu
[ $# -eq 1 ] || { echo "usage: DATABASE_URL=... $0 BACKUP.sql.gz" >&2; exit 2; }
: "${DATABASE_URL:?set DATABASE_URL to the database to restore into}"
gunzip -c "$1" | psql --quiet --set ON_ERROR_STOP=1 --single-transaction "$DATABASE_URL"
echo "restored $1"
