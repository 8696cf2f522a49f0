"""A graph that uses the store (long-term memory), for the store's tests: `recall` reads the item
`("memories", "profile")` / `favourite` and writes `("memories", "runs")` / `last` (the run's text)."""

from __future__ import annotations

from typing import Annotated, TypedDict

from langgraph.config import get_store
from langgraph.graph import END, START, StateGraph


def _append(left: list[str], right: list[str]) -> list[str]:
    return [*left, *right]


class State(TypedDict, total=False):
    text: str
    log: Annotated[list[str], _append]


async def recall(state: State) -> dict:
    store = get_store()
    favourite = await store.aget(("memories", "profile"), "favourite")
    await store.aput(("memories", "runs"), "last", {"text": state["text"]})
    return {"log": [f"favourite:{favourite.value['colour'] if favourite else None}"]}


builder = StateGraph(State)
builder.add_node("recall", recall)
builder.add_edge(START, "recall")
builder.add_edge("recall", END)
graph = builder.compile(name="memory")
