"""Four steps, each one a side effect a test can count (a line appended to the file STEPS_LOG
names: `<step> <run input>`), then `seconds` of work: a run long enough for a database outage to
fall in its middle."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph


def _append(left: list[str], right: list[str]) -> list[str]:
    return [*left, *right]


class State(TypedDict, total=False):
    text: str
    seconds: float
    done: Annotated[list[str], _append]


def _step(name: str):
    async def step(state: State) -> dict:
        with open(os.environ["STEPS_LOG"], "a", encoding="utf-8") as log:
            log.write(f"{name} {state['text']}\n")
        await asyncio.sleep(float(state.get("seconds") or 0))
        return {"done": [name]}

    return step


builder = StateGraph(State)
previous = START
for name in ("one", "two", "three", "four"):
    builder.add_node(name, _step(name))
    builder.add_edge(previous, name)
    previous = name
builder.add_edge(previous, END)
graph = builder.compile(name="steps")
