"""A two-step graph for the run engine's tests: `receive` records the input, `reply` waits
`seconds` (asyncio) then answers. Every message names its input, so that a test can count each
acknowledged input (and its answer) exactly once in the thread."""

from __future__ import annotations

import asyncio
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph


def _append(left: list[str], right: list[str]) -> list[str]:
    return [*left, *right]


class State(TypedDict, total=False):
    text: str
    seconds: float
    log: Annotated[list[str], _append]


async def receive(state: State) -> dict:
    return {"log": [f"in:{state['text']}"]}


async def reply(state: State) -> dict:
    await asyncio.sleep(float(state.get("seconds") or 0))
    return {"log": [f"out:{state['text']}"]}


builder = StateGraph(State)
builder.add_node("receive", receive)
builder.add_node("reply", reply)
builder.add_edge(START, "receive")
builder.add_edge("receive", "reply")
builder.add_edge("reply", END)
graph = builder.compile(name="slow")
