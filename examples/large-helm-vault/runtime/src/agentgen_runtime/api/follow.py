"""A thread's followed stream (`threads.join_stream`, the streaming protocol's events): every
run's events in the order the runs ran and the thread's state updates, read from any process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from ..ownership import Scope
from ..service import Service
from ..streaming.stream import KEEPALIVE_SECONDS, POLL_SECONDS, RUN_DONE, thread_event_wanted


async def follow_thread(svc: Service, caller: Scope, thread_id: str, modes: set[str],
                        resume_at: tuple[int, int] | None) -> AsyncIterator[tuple[str | None, str, Any]]:
    """The thread's events: each run's (in the order the runs ran, each ended by a `metadata`
    `run_done`), from any process, and its state updates. Without `resume_at` the runs in
    progress when it is joined (whole) and every later run; with it, what follows that event.
    Runs created by `runs.wait` record no events: only their `run_done` is sent. Ends when the
    thread is deleted."""
    out: asyncio.Queue[Any] = asyncio.Queue()
    end = object()

    async def runs() -> None:
        if resume_at is None:
            rows = [r for r in await svc.threads.runs_since(caller, thread_id, 0, True)]
            seen = max((r["seq"] for r in rows), default=0)
            rows = [r for r in rows if r["status"] in ("pending", "running")]
        else:
            rows = await svc.threads.runs_since(caller, thread_id, resume_at[0] - 1, False)
            seen = resume_at[0]
        while True:
            for row in rows:
                after = resume_at[1] if resume_at and row["seq"] == resume_at[0] else 0
                if after < RUN_DONE:
                    async for seq, event, data in svc.engine.events(row["run_id"], after):
                        await out.put((f"{row['seq']}-{seq}", event, data))
                    await out.put((f"{row['seq']}-{RUN_DONE}", "metadata",
                                   {"status": "run_done", "run_id": row["run_id"]}))
                seen = max(seen, row["seq"])
            rows = []
            while not rows:
                await asyncio.sleep(POLL_SECONDS)
                rows = await svc.threads.runs_since(caller, thread_id, seen, False)

    async def states() -> None:
        with svc.engine.watch_thread(thread_id) as updates:
            while True:
                await updates.get()
                graph_id = await svc.threads.graph_id(caller, thread_id)
                state = svc.state_json(await svc.state(thread_id, graph_id))
                await out.put((None, "state_update", {"state": state, "thread_id": thread_id}))

    def finished(task: asyncio.Task[Any]) -> None:
        if not task.cancelled():
            out.put_nowait(task.exception() or end)

    tasks = [asyncio.create_task(runs())]
    if "state_update" in modes:
        tasks.append(asyncio.create_task(states()))
    for task in tasks:
        task.add_done_callback(finished)
    try:
        while True:
            try:
                item = await asyncio.wait_for(out.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield None, "", None  # a keepalive
                continue
            if item is end:
                return
            if isinstance(item, BaseException):
                if getattr(item, "status_code", None) == 404:  # the thread was deleted
                    return
                raise item
            if thread_event_wanted(modes, item[1], item[2]):
                yield item
    finally:
        for task in tasks:
            task.remove_done_callback(finished)
            task.cancel()
