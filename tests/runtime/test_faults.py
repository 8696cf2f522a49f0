"""Faults as features: PostgreSQL stopped under load, Redis stopped, several processes starting at once
on an empty database. Each test says what the clients saw and what was kept."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from ..servers import free_port, http_status, postgres_cluster, stop_process, wait_until
from .helpers import WEATHER, redis_server, runtime_env, runtime_server

pytestmark = [pytest.mark.slow, pytest.mark.serial]
RUN = {"assistant_id": "weather", "input": {"question": "q"}}


def test_postgres_stopped_under_load_answers_503_then_recovers(tmp_path):
    with postgres_cluster() as pg:
        url = pg.create_database("outage")
        with runtime_server(url, DB_CONNECT_TIMEOUT="2", RATE_LIMIT_PER_MINUTE="100000") as server:
            wait_until(lambda: http_status(f"{server.base}/ready") == 200, 20, "ready")
            thread_id = server.call("POST", "/threads", {})[1]["thread_id"]
            results: list[tuple[float, float, int, dict]] = []  # (start, end, status, headers)
            stop = threading.Event()

            def client() -> None:
                mine = server.call("POST", "/threads", {})[1]["thread_id"]
                while not stop.is_set():
                    # a run acknowledged before the outage rides it out (its wait is retried); a
                    # request that needs the database now is answered 503 at once
                    for path, body in (("/threads", {}), (f"/threads/{mine}/runs/wait", RUN)):
                        start = time.monotonic()
                        status, answer, headers = server.call("POST", path, body, timeout=20)
                        results.append((start, time.monotonic(), status, headers))
                        if status >= 500:
                            assert set(answer) == {"error", "message", "request_id"}, answer
                        elif path != "/threads":  # never a 200 without the run's result
                            assert status != 200 or answer["answers"][-1].endswith(": q"), \
                                (status, answer)
                    time.sleep(0.05)

            workers = [threading.Thread(target=client) for _ in range(4)]
            for worker in workers:
                worker.start()
            time.sleep(1.5)
            pg.stop()
            down_at = time.monotonic()
            try:
                wait_until(lambda: http_status(f"{server.base}/ready", timeout=5) == 503, 5, "ready 503")
                # the clients may all be riding the outage out in runs.wait: ask ourselves too
                for _ in range(3):
                    start = time.monotonic()
                    status, answer, headers = server.call("POST", "/threads", {}, timeout=20)
                    results.append((start, time.monotonic(), status, headers))
                    assert status == 503 and set(answer) == {"error", "message", "request_id"}, \
                        (status, answer)
                    time.sleep(1)
            finally:
                pg.start()
            wait_until(lambda: http_status(f"{server.base}/ready", timeout=5) == 200, 30, "ready 200")
            ready_at = time.monotonic()
            time.sleep(3)
            stop.set()
            for worker in workers:
                worker.join(30)
            # the thread made before the outage is still there
            assert server.call("GET", f"/threads/{thread_id}")[0] == 200

    statuses = {status for _, _, status, _ in results}
    assert statuses <= {200, 503}, sorted(statuses)  # never a 500 for an outage
    outage = [r for r in results if r[2] == 503]
    assert outage, "no request fell into the outage"
    assert all(r[3].get("retry-after", "").isdigit() for r in outage)
    # a request during the outage is answered within the connect timeout (2 s), with some slack
    assert max(end - start for start, end, status, _ in outage) < 6
    after_ready = [r for r in results if r[0] >= ready_at]
    assert after_ready and all(status == 200 for _, _, status, _ in after_ready), after_ready[:5]
    assert sum(1 for r in results if r[2] == 200 and r[0] < down_at) > 0


def test_no_client_gets_a_200_without_its_result_across_ten_outages(tmp_path):
    """Clients in runs.wait while PostgreSQL stops and starts ten times, so that outcomes are
    being recorded when it goes: every 200 carries its run's answer; the rest are 5xx JSON."""
    with postgres_cluster() as pg:
        url = pg.create_database("outages")
        # A 3 s lease puts outcomes being recorded into the outages; a restart slower than the lease
        # under load lapses it, and each lapse counts an attempt: attempts are not what is tested
        # here (a run abandoned after run_max_attempts answers its error: an outcome, not a loss).
        with runtime_server(url, DB_CONNECT_TIMEOUT="2", RATE_LIMIT_PER_MINUTE="100000",
                            RUN_LEASE_SECONDS="3", RUN_MAX_ATTEMPTS="100") as server:
            wait_until(lambda: http_status(f"{server.base}/ready") == 200, 20, "ready")
            bad: list[object] = []
            answered = [0]
            stop = threading.Event()

            def client(index: int) -> None:
                mine = None
                n = 0
                while not stop.is_set():
                    n += 1
                    try:
                        if mine is None:
                            status, body, _ = server.call("POST", "/threads", {}, timeout=30)
                            mine = body["thread_id"] if status == 200 else None
                            continue
                        question = f"c{index}-{n}"
                        status, body, _ = server.call("POST", f"/threads/{mine}/runs/wait", {
                            "assistant_id": "weather", "input": {"question": question}}, timeout=60)
                    except OSError as exc:
                        bad.append(("transport", exc))
                        continue
                    if status == 200:
                        if not (isinstance(body, dict) and body.get("answers")
                                and body["answers"][-1].endswith(question)):
                            bad.append((status, body))
                        answered[0] += 1
                    elif status < 500 or set(body or {}) != {"error", "message", "request_id"}:
                        bad.append((status, body))

            workers = [threading.Thread(target=client, args=(i,)) for i in range(4)]
            for worker in workers:
                worker.start()
            try:
                for _ in range(10):
                    time.sleep(1.0)
                    pg.stop()
                    time.sleep(0.5)
                    pg.start()
                time.sleep(3)
            finally:
                stop.set()
                for worker in workers:
                    worker.join(90)
    assert bad == [], bad[:5]
    assert answered[0] > 10


def test_a_database_restart_mid_run_runs_no_saved_step_again(tmp_path):
    """Two processes; PostgreSQL stopped for 3 s while a four-step run is in its second step, under
    each durability mode: the save that fails is retried until the database is back, so every
    step's side effect happens once (it was: the whole run again under `async`, the failed step
    again under `sync`), and the run succeeds."""
    import json

    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"dependencies": [str(WEATHER)],
                                  "graphs": {"steps": f"{WEATHER}/src/weather_agent/steps.py:graph"}}))
    steps = tmp_path / "steps.log"
    steps.write_text("")
    env = {"LANGGRAPH_CONFIG": str(config), "STEPS_LOG": str(steps), "RUN_LEASE_SECONDS": "10",
           "DB_CONNECT_TIMEOUT": "2"}
    with postgres_cluster() as pg:
        url = pg.create_database("restart")
        with runtime_server(url, **env) as a, runtime_server(url, **env) as b:
            for mode in ("async", "sync", "exit"):
                tid = a.call("POST", "/threads", {})[1]["thread_id"]
                status, run, _ = a.call("POST", f"/threads/{tid}/runs", {
                    "assistant_id": "steps", "durability": mode,
                    "input": {"text": mode, "seconds": 1.5}})
                assert status == 200, run
                wait_until(lambda mode=mode: f"two {mode}" in steps.read_text(), 30, "step two")
                pg.stop()
                time.sleep(3)
                pg.start()
                wait_until(lambda: http_status(f"{b.base}/ready") == 200, 30, "ready again")

                def finished(tid=tid, run=run) -> bool:
                    status, row, _ = b.call("GET", f"/threads/{tid}/runs/{run['run_id']}")
                    return status == 200 and row["status"] not in ("pending", "running")

                wait_until(finished, 90, f"the {mode} run's end")
                row = b.call("GET", f"/threads/{tid}/runs/{run['run_id']}")[1]
                done = [line.split()[0] for line in steps.read_text().splitlines()
                        if line.endswith(f" {mode}")]
                assert row["status"] == "success", (mode, row)
                assert done == ["one", "two", "three", "four"], (mode, done)


def test_requests_during_an_outage_do_not_wait_for_the_pool_timeout(tmp_path):
    """With a long connect timeout (10 s), requests made once PostgreSQL is down are answered 503
    as soon as a connection attempt fails, not after the timeout: the first ones too."""
    timeout = 10.0
    with postgres_cluster() as pg:
        url = pg.create_database("fast503")
        with runtime_server(url, DB_CONNECT_TIMEOUT=str(int(timeout)),
                            RATE_LIMIT_PER_MINUTE="100000") as server:
            wait_until(lambda: http_status(f"{server.base}/ready") == 200, 20, "ready")
            assert server.call("POST", "/threads", {})[0] == 200
            pg.stop()
            try:
                answers: list[tuple[int, float]] = []

                def ask() -> None:
                    start = time.monotonic()
                    status, _, _ = server.call("POST", "/threads", {}, timeout=30)
                    answers.append((status, time.monotonic() - start))

                clients = [threading.Thread(target=ask) for _ in range(4)]
                for client in clients:
                    client.start()
                for client in clients:
                    client.join(40)
            finally:
                pg.start()
    assert [status for status, _ in answers] == [503] * 4, answers
    assert max(seconds for _, seconds in answers) < timeout / 2, answers


def test_connections_closed_by_the_server_cost_no_failed_request(database):
    """The pool checks a connection before use without a round trip unless its socket turned
    readable: connections the server terminated (a restart, a failover, an idle timeout) are
    replaced, and no request fails for them."""
    with runtime_server(database, DB_POOL_SIZE="4", RATE_LIMIT_PER_MINUTE="100000") as server:
        wait_until(lambda: http_status(f"{server.base}/ready") == 200, 20, "ready")
        thread_id = server.call("POST", "/threads", {})[1]["thread_id"]
        for _ in range(3):
            for _ in range(4):
                assert server.call("POST", f"/threads/{thread_id}/runs/wait", RUN)[0] == 200
            with psycopg.connect(database, autocommit=True) as conn:
                killed = conn.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'").fetchone()[0]
            assert killed >= 2  # the pool's connections and the LISTEN one
            time.sleep(0.2)
            answers = [server.call("POST", f"/threads/{thread_id}/runs/wait", RUN)[0]
                       for _ in range(6)]
            answers.append(server.call("GET", f"/threads/{thread_id}")[0])
            assert answers == [200] * 7
        state = server.call("GET", f"/threads/{thread_id}/state")[1]["values"]
        assert len(state["answers"]) == 3 * (4 + 6)  # every answered run kept, once


def test_redis_stopped_the_api_keeps_serving(database):
    with redis_server() as (redis_url, redis_proc), runtime_server(
            database, REDIS_ENABLED="true", REDIS_URL=redis_url, RATE_LIMIT_PER_MINUTE="1000") as server:
        wait_until(lambda: http_status(f"{server.base}/ready") == 200, 20, "ready")
        assert server.call("POST", "/runs/wait", RUN)[0] == 200
        stop_process(redis_proc)
        statuses = [server.call("POST", "/runs/wait", RUN)[0] for _ in range(5)]
        assert statuses == [200] * 5
        status, body, _ = server.call("GET", "/ready", key=None)
        # Redis down degrades rate limits to per-process ones: the replica stays ready
        assert status == 200 and body["checks"]["redis"] != "ok"
        metrics = server.metrics()
        assert "agent_rate_limit_fallbacks_total 5.0" in metrics or \
            "agent_rate_limit_fallbacks_total 6.0" in metrics, metrics[-2000:]


def test_four_processes_start_at_once_on_an_empty_database(postgres):
    url = postgres.create_database("race")
    ports = [free_port() for _ in range(4)]
    procs = [subprocess.Popen([sys.executable, "-m", "agentgen_runtime"], cwd=WEATHER,
                              env={**os.environ, **runtime_env(url, PORT=str(port), LOG_LEVEL="INFO")},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True) for port in ports]
    try:
        for port in ports:
            wait_until(lambda p=port: http_status(f"http://127.0.0.1:{p}/ready") == 200, 60, "ready")
        for port in ports:
            from .helpers import Server

            assert Server("", port, None).call("POST", "/runs/wait", RUN)[0] == 200  # type: ignore[arg-type]
    finally:
        for proc in procs:
            stop_process(proc)
    logs = "".join(proc.stdout.read() if proc.stdout and not proc.stdout.closed else "" for proc in procs)
    assert "duplicate key" not in logs and "schema not set up" not in logs


def test_concurrent_migrations_are_serialized(postgres):
    url = postgres.create_database("migrate_race")
    env = {**os.environ, **runtime_env(url)}
    procs = [subprocess.Popen([sys.executable, "-m", "agentgen_runtime", "maintenance", "migrate"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outcomes = [(proc.wait(120), proc.stderr.read()) for proc in procs]
    assert all(code == 0 for code, _ in outcomes), outcomes
    with psycopg.connect(url) as conn:
        tables = {r[0] for r in conn.execute("select tablename from pg_tables where schemaname='public'")}
    assert {"checkpoints", "store", "agent_threads", "agent_runs"} <= tables


def _accepted(limiter, identity: str, seconds: float, window: float) -> list[float]:
    """Call the limiter as fast as possible for `seconds`; the times of the accepted calls."""
    from fastapi import HTTPException

    async def run() -> list[float]:
        accepted = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                await limiter.check(identity)
                accepted.append(time.monotonic())
            except HTTPException as exc:
                assert exc.status_code == 429 and 1 <= int(exc.headers["Retry-After"]) <= max(1, window)
            await asyncio.sleep(0.005)
        return accepted

    return asyncio.run(run())


def _max_in_any_window(times: list[float], window: float) -> int:
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


@pytest.mark.parametrize("backend", ["process", "redis"])
def test_rate_limit_is_a_sliding_window_without_edge_bursts(backend, monkeypatch):
    """At most `limit` requests in any window (a fixed window lets 2x through at its edge)."""
    from agentgen_runtime.auth import keys as auth

    window = 1.0
    monkeypatch.setattr(auth, "WINDOW_SECONDS", window)
    if backend == "process":
        times = _accepted(auth.RateLimiter(5), "k", 3.5, window)
    else:
        from redis.asyncio import Redis

        with redis_server() as (url, _):
            times = _accepted(auth.RateLimiter(5, Redis.from_url(url)), "k", 3.5, window)
    # measured on this side of the connection: a little less than the window absorbs latency jitter
    assert _max_in_any_window(times, window * 0.95) <= 5
    assert len(times) >= 15  # and the limit is reached again in each later window
