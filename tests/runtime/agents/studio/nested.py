"""A graph with a subgraph (for Studio's contract: drawing with xray, subgraphs, schemas)."""

from __future__ import annotations

from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph


def _append(left: list[str], right: list[str]) -> list[str]:
    return [*left, *right]


class State(TypedDict, total=False):
    text: str
    log: Annotated[list[str], _append]


def draft(state: State) -> dict:
    return {"log": [f"draft:{state['text']}"]}


def polish(state: State) -> dict:
    return {"log": ["polish"]}


def review(state: State) -> dict:
    return {"log": ["review"]}


editor = (StateGraph(State).add_node("polish", polish).add_edge(START, "polish")
          .add_edge("polish", END).compile(name="editor"))
graph = (StateGraph(State).add_node("draft", draft).add_node("editor", editor)
         .add_node("review", review).add_edge(START, "draft").add_edge("draft", "editor")
         .add_edge("editor", "review").add_edge("review", END).compile(name="nested"))
