"""agentgen-runtime serving a generated project under load, beside its peers serving the same graph
in the same run, on loopback, with the same load generator (the generated repo's
scripts/load_test.py): 1 and 16 concurrent clients of `runs/wait` on the offline `fake` model.

Peers: `langgraph dev` (in-memory), langhost (the stock `langgraph-api` on the MIT
`langgraph-runtime-pg`: the same PostgreSQL plus a Redis; as many jobs per process as the service
runs), Aegra (`aegra-api` from PyPI, on the same PostgreSQL), and the raw limit
(benchmarks/raw_limit.py: the same graph `ainvoke`d in-process with AsyncPostgresSaver, no HTTP, no
run rows). Prints throughput, p50/p95/p99, errors, checkpoint write/read p95 (from the
service's own metrics) and idle RSS, with ratios, and checks that every finished run's state is in
PostgreSQL (every acknowledged run durable).

Run: .venv/bin/python benchmarks/service.py [--requests 2000] [--workers 1] [--no-aegra] [--no-langhost]
     [--durability async]  (the service's and the raw limit's; langgraph dev and langhost run with
     async, the Platform's default)
(needs the test extras and PostgreSQL server binaries: ./scripts/setup.sh --test)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agentgen import generate, load_spec  # noqa: E402
from tests.runtime.helpers import redis_server  # noqa: E402
from tests.servers import (  # noqa: E402
    free_port,
    http_status,
    postgres_cluster,
    process,
    project_python,
)

LANGHOST = "0.11.1.post1"  # langhost and langgraph-runtime-pg, released together
RUNS_PER_PROCESS = 10  # the service's MAX_CONCURRENT_RUNS default, given to langhost too


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn workers), in MB."""
    pids = [pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                   text=True).stdout.split()]
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def load(python: str, project: Path, url: str, requests: int, concurrency: int) -> dict:
    out = subprocess.run([python, str(project / "scripts" / "load_test.py"), "--url", url,
                          "--requests", str(requests), "--concurrency", str(concurrency),
                          "--api-key", "bench-key", "--json", "--max-seconds", "240"],
                         capture_output=True, text=True, check=False)
    if not out.stdout.strip():
        raise RuntimeError(f"load test failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def buckets(metrics: str, name: str, label: str) -> dict[float, float]:
    """Cumulative bucket counts of a Prometheus histogram for one `operation` label."""
    found = {}
    for line in metrics.splitlines():
        if line.startswith(f"{name}_bucket{{") and f'operation="{label}"' in line:
            bound = line.split('le="')[1].split('"')[0]
            found[float("inf") if bound == "+Inf" else float(bound)] = float(line.split()[-1])
    return found


def p95_ms(after: dict[float, float], before: dict[float, float]) -> float | None:
    """p95 (the upper bound of its bucket, ms) of the observations made between two scrapes."""
    delta = sorted((bound, count - before.get(bound, 0.0)) for bound, count in after.items())
    if not delta or delta[-1][1] == 0:
        return None
    return next(bound * 1000 for bound, count in delta if count >= 0.95 * delta[-1][1])


def durable_messages(python: str, project: Path, url: str) -> tuple[int, int]:
    """(messages, threads) in PostgreSQL, read back through the checkpointer by a fresh process."""
    code = (
        "import asyncio, json, sys\n"
        "import psycopg\n"
        "from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver\n"
        "from bench.graph import build_graph\n"
        "async def main(url):\n"
        "    with psycopg.connect(url) as conn:\n"
        "        ids = [r[0] for r in conn.execute('select thread_id from agent_threads')]\n"
        "    async with AsyncPostgresSaver.from_conn_string(url) as saver:\n"
        "        graph = build_graph().compile(checkpointer=saver)\n"
        "        total = 0\n"
        "        for tid in ids:\n"
        "            state = await graph.aget_state({'configurable': {'thread_id': tid}})\n"
        "            total += len(state.values.get('messages', []))\n"
        "    print(json.dumps([total, len(ids)]))\n"
        "asyncio.run(main(sys.argv[1]))\n")
    out = subprocess.run([python, "-c", code, url], cwd=project, capture_output=True, text=True,
                         check=True)
    messages, threads = json.loads(out.stdout)
    return messages, threads


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers of the service")
    parser.add_argument("--no-aegra", dest="aegra", action="store_false",
                        help="skip Aegra (it is installed from PyPI into a virtualenv of its own)")
    parser.add_argument("--no-langhost", dest="langhost", action="store_false",
                        help="skip langhost (from PyPI into a virtualenv of its own; needs redis-server)")
    parser.add_argument("--durability", choices=("async", "sync", "exit"), default="async",
                        help="CHECKPOINT_DURABILITY of the service and of the raw limit")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agentgen-svc-bench-"))
    project = work / "bench"
    generate(load_spec({"name": "bench", "scale": "dev", "targets": ["compose", "langgraph-platform"]}),
             project, git=False)
    python = project_python(project, "langgraph-cli[inmem]")
    results: dict[str, dict] = {}
    c1_requests = max(200, args.requests // 4)
    with postgres_cluster() as pg:
        url = pg.create_database("bench")
        port, metrics_port = free_port(), free_port()
        env = {"DATABASE_URL": url, "PORT": str(port), "METRICS_PORT": str(metrics_port),
               "WORKERS": str(args.workers), "CHECKPOINT_DURABILITY": args.durability,
               "API_KEYS": "bench-key", "LOG_LEVEL": "WARNING", "SECRETS_DIR": str(work / "none"),
               "RATE_LIMIT_PER_MINUTE": "1000000", "DB_POOL_SIZE": "20", "DB_POOL_OVERFLOW": "10"}
        base = f"http://127.0.0.1:{port}"
        with process([python, "-m", "agentgen_runtime"], cwd=project, env=env, what="service",
                     ready=lambda: http_status(f"{base}/ready") == 200) as proc:
            time.sleep(1)
            name = "agent_checkpointer_operation_duration_seconds"

            def scrape() -> dict[str, dict[float, float]]:
                text = subprocess.run(["curl", "-s", f"http://127.0.0.1:{metrics_port}/metrics"],
                                      capture_output=True, text=True).stdout
                return {op: buckets(text, name, op) for op in ("write", "read")}

            results["service"] = {"idle_rss_mb": round(rss_mb(proc.pid), 1)}
            before = scrape()
            results["service"]["c1"] = load(python, project, base, c1_requests, 1)
            middle = scrape()
            results["service"]["c16"] = load(python, project, base, args.requests, 16)
            after = scrape()
            for op in ("write", "read"):
                results["service"][f"checkpoint_{op}_p95_ms"] = (
                    f"{p95_ms(middle[op], before[op])} / {p95_ms(after[op], middle[op])}")
        # The server is gone: every finished run's two messages must be in PostgreSQL.
        answered, threads = durable_messages(python, project, url)
    ok_runs = sum(results["service"][c]["requests"] + results["service"][c]["warmup_requests"]
                  for c in ("c1", "c16"))

    port = free_port()
    peer = f"http://127.0.0.1:{port}"
    langgraph = str(Path(python).parent / "langgraph")
    with process([langgraph, "dev", "--no-browser", "--no-reload", "--port", str(port), "--host",
                  "127.0.0.1"], cwd=project, what="langgraph dev",
                 env={"LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false",
                      "LOG_LEVEL": "WARNING", "SECRETS_DIR": str(work / "none")},
                 ready=lambda: http_status(f"{peer}/ok") == 200, timeout=120) as proc:
        results["langgraph dev"] = measure(proc.pid, python, project, peer, c1_requests,
                                           args.requests)

    with postgres_cluster() as pg:
        url = pg.create_database("raw")
        results["raw limit"] = {"idle_rss_mb": None}
        for name, concurrency, count in (("c1", 1, c1_requests), ("c16", 16, args.requests)):
            out = subprocess.run([python, str(ROOT / "benchmarks" / "raw_limit.py"), "--url", url,
                                  "--requests", str(count), "--concurrency", str(concurrency),
                                  "--durability", args.durability],
                                 cwd=project, capture_output=True, text=True, check=True)
            results["raw limit"][name] = json.loads(out.stdout)
        if args.langhost:
            try:
                results["langhost"] = langhost(project, work, pg.create_database("langhost"),
                                               python, c1_requests, args.requests)
            except Exception as exc:  # noqa: BLE001 - a peer, not the subject
                print(f"langhost could not be measured: {str(exc)[-600:]}", file=sys.stderr)
        if args.aegra:
            try:
                results["aegra"] = aegra(project, work, pg.create_database("aegra"), python,
                                         c1_requests, args.requests)
            except (RuntimeError, subprocess.CalledProcessError) as exc:  # a peer, not the subject
                print(f"aegra could not be measured: {str(exc)[-600:]}", file=sys.stderr)

    peers = [p for p in ("langgraph dev", "langhost", "aegra", "raw limit") if p in results]
    print(f"\nservice: agentgen-runtime ({args.workers} worker(s), durability {args.durability}, durable run "
          f"engine); peers: {', '.join(peers)}\n")
    print(f"{'':26}{'service':>10}" + "".join(f"{p:>16}" for p in peers))
    rows = [("throughput c16 (req/s)", "c16", "throughput_rps"), ("p50 c16 (ms)", "c16", "p50_ms"),
            ("p95 c16 (ms)", "c16", "p95_ms"), ("p99 c16 (ms)", "c16", "p99_ms"),
            ("errors c16", "c16", "errors"), ("throughput c1 (req/s)", "c1", "throughput_rps"),
            ("p50 c1 (ms)", "c1", "p50_ms"), ("p95 c1 (ms)", "c1", "p95_ms"),
            ("p99 c1 (ms)", "c1", "p99_ms"), ("errors c1", "c1", "errors")]
    for label, run, key in rows:
        print(f"{label:26}{results['service'][run][key]!s:>10}"
              + "".join(f"{results[p][run][key]!s:>16}" for p in peers))
    print(f"{'idle RSS (MB)':26}{results['service']['idle_rss_mb']!s:>10}"
          + "".join(f"{results[p]['idle_rss_mb']!s:>16}" for p in peers))
    for key in ("checkpoint_write_p95_ms", "checkpoint_read_p95_ms"):
        print(f"service {key} c1 / c16: {results['service'][key]}")
    ours = results["service"]["c16"]["throughput_rps"]
    print("\nratios, service / peer (c16 throughput): " + ", ".join(
        f"{p}: {ours / results[p]['c16']['throughput_rps']:.2f}x" for p in peers
        if results[p]["c16"]["throughput_rps"]))
    c16 = results["service"]["c16"]
    print(f"targets: >= 2x langgraph dev, >= 2.5x langhost, >= 3x aegra, >= 60% of the raw limit "
          f"(above); "
          f"c1 p95 <= 10 ms: {results['service']['c1']['p95_ms']}; "
          f"c16 p99 <= 3x p50: {c16['p99_ms'] / c16['p50_ms']:.2f}x; "
          f"idle RSS <= 150 MB: {results['service']['idle_rss_mb']}; errors: "
          f"{c16['errors'] + results['service']['c1']['errors']}")
    print(f"durability: {ok_runs} finished runs on {threads} threads; read back from PostgreSQL after "
          f"the server stopped: {answered} messages ({'OK' if answered == 2 * ok_runs else 'MISSING'}: "
          f"2 per run)")


def peer_venv(venv: Path, *requirements: str) -> Path:
    """A virtualenv of a peer's own (its dependencies are not the runtime's), made by uv."""
    uv = Path(sys.executable).parent / "uv"
    subprocess.run([str(uv), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    subprocess.run([str(uv), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
                    *requirements], check=True)
    return venv


def measure(pid: int, python: str, project: Path, base: str, c1_requests: int,
            requests: int) -> dict:
    """A peer's idle memory, then its load test at 1 and 16 clients."""
    time.sleep(2)
    return {"idle_rss_mb": round(rss_mb(pid), 1), "c1": load(python, project, base, c1_requests, 1),
            "c16": load(python, project, base, requests, 16)}


def langhost(project: Path, work: Path, url: str, python: str, c1_requests: int,
             requests: int) -> dict:
    """langhost (`langhost` + `langgraph-runtime-pg` from PyPI: the stock LangGraph API server on
    PostgreSQL and Redis) serving the project's langgraph.json on its own database of the same
    cluster and a Redis of its own, with as many concurrent runs per process as the service."""
    venv = peer_venv(work / "langhost-venv", f"langhost=={LANGHOST}",
                     f"langgraph-runtime-pg=={LANGHOST}", "-e", str(project))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with redis_server() as (redis_url, _):
        env = {"DATABASE_URI": url, "REDIS_URI": redis_url, "LANGSMITH_TRACING": "false",
               "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LOG_LEVEL": "WARNING",
               "SECRETS_DIR": str(work / "none")}
        with process([str(venv / "bin" / "langhost"), "serve", "--host", "127.0.0.1", "--port",
                      str(port), "--config", "langgraph.json", "--no-browser",
                      "--n-jobs-per-worker", str(RUNS_PER_PROCESS)], cwd=project, env=env,
                     what="langhost", ready=lambda: http_status(f"{base}/ok") == 200,
                     timeout=180) as proc:
            return measure(proc.pid, python, project, base, c1_requests, requests)


def aegra(project: Path, work: Path, url: str, python: str, c1_requests: int, requests: int) -> dict:
    """Aegra (`aegra-api` from PyPI) serving the project's langgraph.json on its own database of the
    same cluster, in a virtualenv of its own (its dependencies are not the runtime's)."""
    # greenlet: SQLAlchemy's asyncio needs it and aegra-api does not declare it
    venv = peer_venv(work / "aegra-venv", "aegra-api", "greenlet", "-e", str(project))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"DATABASE_URL": url, "PORT": str(port), "HOST": "127.0.0.1", "AUTH_TYPE": "noop",
           "LOG_LEVEL": "WARNING", "SECRETS_DIR": str(work / "none"), "LANGSMITH_TRACING": "false",
           "SQLALCHEMY_POOL_SIZE": "20", "LANGGRAPH_MAX_POOL_SIZE": "20"}
    with process([str(venv / "bin" / "python"), "-m", "aegra_api.main"], cwd=project, env=env,
                 what="aegra", ready=lambda: http_status(f"{base}/health") == 200,
                 timeout=120) as proc:
        return measure(proc.pid, python, project, base, c1_requests, requests)


if __name__ == "__main__":
    main()
