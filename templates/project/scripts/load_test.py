#!/usr/bin/env python3
"""Load test of the agent API (or any LangGraph-API server): N `runs/wait` requests from C concurrent
clients, each holding conversations of --turns runs on a thread, bounded in count and time.
Prints throughput, latency percentiles and errors (or --json). Loopback only unless --allow-remote:
never point it at servers you do not own.

  python scripts/load_test.py --requests 2000 --concurrency 16 [--url http://127.0.0.1:8000]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import statistics
import sys
import time
from collections import Counter
from urllib.parse import urlparse

import httpx


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


async def client_loop(http: httpx.AsyncClient, args: argparse.Namespace, budget: list[int],
                      deadline: float, latencies: list[float], errors: Counter) -> None:
    body = {"assistant_id": args.assistant,
            "input": args.input or {"messages": [{"role": "user", "content": args.message}]}}
    turns = 0
    thread_id = None
    while budget[0] > 0 and time.monotonic() < deadline:
        budget[0] -= 1  # claimed before any await: the clients together send exactly the budget
        if thread_id is None or turns == args.turns:
            response = await http.post("/threads", json={})
            if response.status_code != 200:
                errors[f"thread {response.status_code}"] += 1
                return
            thread_id, turns = response.json()["thread_id"], 0
        turns += 1
        start = time.perf_counter()
        try:
            response = await http.post(f"/threads/{thread_id}/runs/wait", json=body)
        except httpx.HTTPError as exc:
            errors[type(exc).__name__] += 1
            continue
        elapsed = time.perf_counter() - start
        if response.status_code == 200:
            latencies.append(elapsed)
        else:
            errors[str(response.status_code)] += 1


async def run(args: argparse.Namespace) -> dict:
    headers = {args.api_key_header: args.api_key} if args.api_key else {}
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    latencies: list[float] = []
    errors: Counter = Counter()
    budget = [args.requests]
    warm: list[float] = []
    async with httpx.AsyncClient(base_url=args.url, headers=headers, limits=limits,
                                 timeout=args.timeout) as http:
        # warm-up: connections, imports and caches on the server are not what is measured
        await asyncio.gather(*(client_loop(http, args, [args.warmup], time.monotonic() + 30,
                                           warm, Counter()) for _ in range(min(args.concurrency, 4))))
        start = time.perf_counter()
        deadline = time.monotonic() + args.max_seconds
        await asyncio.gather(*(client_loop(http, args, budget, deadline, latencies, errors)
                               for _ in range(args.concurrency)))
        wall = time.perf_counter() - start
    ms = [x * 1000 for x in latencies]
    return {
        "url": args.url, "concurrency": args.concurrency, "requests": len(latencies),
        "warmup_requests": len(warm),
        "errors": sum(errors.values()), "error_kinds": dict(errors), "seconds": round(wall, 3),
        "throughput_rps": round(len(latencies) / wall, 1) if wall else 0.0,
        "p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2), "max_ms": round(max(ms), 2) if ms else None,
        "mean_ms": round(statistics.fmean(ms), 2) if ms else None,
    }


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--requests", type=int, default=1000, help="runs/wait requests in all")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    parser.add_argument("--max-seconds", type=float, default=300, help="stop after this long")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests first")
    parser.add_argument("--timeout", type=float, default=60, help="per request, seconds")
    parser.add_argument("--turns", type=int, default=10, help="runs per thread (conversation)")
    parser.add_argument("--assistant", default="agent", help="graph id (a key of langgraph.json graphs)")
    parser.add_argument("--message", default="hello", help="sent as one user message")
    parser.add_argument("--input", type=json.loads, help="the run's input as JSON, for graphs whose "
                        'state has no messages (e.g. \'{"text": "hi"}\')')
    parser.add_argument("--api-key", default=os.environ.get("API_KEY"))
    parser.add_argument("--api-key-header", default="X-API-Key")
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback URL")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if not is_loopback(args.url) and not args.allow_remote:
        parser.error(f"{args.url} is not a loopback address; pass --allow-remote for your own servers")
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['requests']} requests in {result['seconds']} s from {args.concurrency} clients: "
              f"{result['throughput_rps']} req/s; latency p50 {result['p50_ms']} ms, "
              f"p95 {result['p95_ms']} ms, p99 {result['p99_ms']} ms; errors {result['errors']} "
              f"{result['error_kinds'] or ''}")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
