"""`agentgen-runtime maintenance`: database chores, by hand or from the Kubernetes Job/CronJobs.

  migrate                           create or migrate the checkpointer and store tables
  cleanup --older-than-days N       delete threads whose last checkpoint is older than N days
          [--dry-run]
  backup --dir DIR [--keep-days N]  pg_dump | gzip into DIR, then drop dumps older than N days

Each prints one line of what it did; exit status 1 with one line on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .db import connect, delete_threads, idle_threads
from .schema import setup_schema
from .settings import Settings, get_settings


async def migrate(settings: Settings) -> str:
    async with await connect(settings) as conn:
        await setup_schema(conn)
    return "migrate: checkpointer and store tables are up to date"


async def cleanup(settings: Settings, older_than_days: int, dry_run: bool) -> str:
    async with await connect(settings) as conn:
        threads = await idle_threads(conn, older_than_days * 1440)
        if not dry_run:
            await delete_threads(conn, threads)
    verb = "would delete" if dry_run else "deleted"
    return f"cleanup: {verb} {len(threads)} thread(s) idle for more than {older_than_days} day(s)"


def backup(settings: Settings, directory: Path, keep_days: int) -> str:
    """pg_dump in plain SQL, gzipped; the password goes through the environment, not argv."""
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise RuntimeError("pg_dump is not installed (apt-get install postgresql-client)")
    params = conninfo_to_dict(settings.database_conninfo())
    env = {**os.environ}
    if params.get("password"):
        env["PGPASSWORD"] = str(params.pop("password"))
    directory.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    target = directory / f"{params.get('dbname', 'database')}-{stamp}.sql.gz"
    partial = target.with_name(target.name + ".partial")
    cmd = [pg_dump, "--no-owner", "--no-privileges", "--dbname", make_conninfo(**params)]
    # A fixed argument list without a shell; the connection string comes from our own settings.
    with subprocess.Popen(  # noqa: S603
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    ) as proc:
        with gzip.open(partial, "wb") as out:
            shutil.copyfileobj(proc.stdout, out)  # type: ignore[arg-type]
        error = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        reason = error.splitlines()[-1] if error else f"exit status {proc.returncode}"
        raise RuntimeError(f"pg_dump failed: {reason}")
    partial.rename(target)
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=keep_days)
    removed = 0
    for old in directory.glob("*.sql.gz"):
        if dt.datetime.fromtimestamp(old.stat().st_mtime, dt.UTC) < cutoff:
            old.unlink()
            removed += 1
    return f"backup: wrote {target} ({target.stat().st_size} bytes); removed {removed} old dump(s)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentgen-runtime maintenance")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="create or migrate the checkpointer and store tables")
    clean = commands.add_parser("cleanup", help="delete threads idle for more than N days")
    clean.add_argument("--older-than-days", type=int, required=True)
    clean.add_argument("--dry-run", action="store_true")
    dump = commands.add_parser("backup", help="pg_dump | gzip into a directory")
    dump.add_argument("--dir", type=Path, required=True)
    dump.add_argument("--keep-days", type=int, default=14)
    args = parser.parse_args(argv)
    settings = get_settings()
    try:
        if args.command == "migrate":
            message = asyncio.run(migrate(settings))
        elif args.command == "cleanup":
            message = asyncio.run(cleanup(settings, args.older_than_days, args.dry_run))
        else:
            message = backup(settings, args.dir, args.keep_days)
    except Exception as exc:  # noqa: BLE001 - one line for the operator, not a traceback
        print(f"{args.command} failed: {type(exc).__name__}: {' '.join(str(exc).split())}",
              file=sys.stderr)
        return 1
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
