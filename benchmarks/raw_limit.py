"""The raw limit the service is compared with: the generated project's graph `ainvoke`d in-process
with AsyncPostgresSaver on a connection pool (no HTTP, no run rows), by the same number of
concurrent clients holding conversations of `--turns` runs per thread, at the service's durability
(`--durability`, exit by default as the service's).
Prints the load generator's JSON (throughput, percentiles) so that benchmarks/service.py can put
it beside the servers. Run with the project's Python, from the project directory:

    python raw_limit.py --url postgresql://... --requests 2000 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def main(args: argparse.Namespace) -> dict:
    from bench.graph import build_graph

    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    async with AsyncConnectionPool(args.url, min_size=20, max_size=30, kwargs=kwargs) as pool:
        saver = AsyncPostgresSaver(pool)
        await saver.setup()
        graph = build_graph().compile(checkpointer=saver)
        body = {"messages": [{"role": "user", "content": "hello"}]}
        latencies: list[float] = []
        budget = [args.requests]

        async def client(count: list[int], sink: list[float]) -> None:
            thread, turns = str(uuid.uuid4()), 0
            while count[0] > 0:
                count[0] -= 1
                if turns == args.turns:
                    thread, turns = str(uuid.uuid4()), 0
                turns += 1
                start = time.perf_counter()
                await graph.ainvoke(body, {"configurable": {"thread_id": thread}}, durability=args.durability)
                sink.append(time.perf_counter() - start)

        await asyncio.gather(*(client([args.warmup], []) for _ in range(min(args.concurrency, 4))))
        start = time.perf_counter()
        await asyncio.gather(*(client(budget, latencies) for _ in range(args.concurrency)))
        wall = time.perf_counter() - start
    ms = [x * 1000 for x in latencies]
    return {"concurrency": args.concurrency, "requests": len(ms), "warmup_requests": args.warmup,
            "errors": 0, "seconds": round(wall, 3), "throughput_rps": round(len(ms) / wall, 1),
            "p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2),
            "p99_ms": round(percentile(ms, 99), 2), "mean_ms": round(statistics.fmean(ms), 2)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--durability", choices=("async", "sync", "exit"), default="exit")
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
