"""A two-step graph for the run engine's tests: `receive` records the input, `reply` waits
`seconds` (asyncio, or `time.sleep` when `block` is set: blocking code in an async node, as real
agents have) then answers. Every message names its input, so that a test can count each
acknowledged input (and its answer) exactly once in the thread."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt


def _append(left: list[str], right: list[str]) -> list[str]:
    return [*left, *right]


class State(TypedDict, total=False):
    text: str
    seconds: float
    block: bool
    log: Annotated[list[str], _append]


async def receive(state: State) -> dict:
    return {"log": [f"in:{state['text']}"]}


async def reply(state: State) -> dict:
    if state.get("block"):
        time.sleep(float(state.get("seconds") or 0))  # noqa: ASYNC251 - on purpose: a stalled loop
    else:
        await asyncio.sleep(float(state.get("seconds") or 0))
    return {"log": [f"out:{state['text']}"]}


builder = StateGraph(State)
builder.add_node("receive", receive)
builder.add_node("reply", reply)
builder.add_edge(START, "receive")
builder.add_edge("receive", "reply")
builder.add_edge("reply", END)
graph = builder.compile(name="slow")


async def decide(state: State) -> dict:
    """Pauses for a decision (interrupt), then takes `seconds` to apply it."""
    decision = interrupt({"question": f"approve {state['text']}?"})
    await asyncio.sleep(float(state.get("seconds") or 0))
    return {"log": [f"decision:{decision}"]}


approval = StateGraph(State)
approval.add_node("receive", receive)
approval.add_node("decide", decide)
approval.add_edge(START, "receive")
approval.add_edge("receive", "decide")
approval.add_edge("decide", END)
approve = approval.compile(name="approve")
