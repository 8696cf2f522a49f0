"""A graph with a subgraph (for Studio's contract: drawing with xray, subgraphs, schemas, and every
stream mode from inside the subgraph: a chat model's tokens, a custom event)."""

from __future__ import annotations

from typing import Annotated, TypedDict

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph, add_messages


def _append(left: list[str], right: list[str]) -> list[str]:
    return [*left, *right]


class State(TypedDict, total=False):
    text: str
    log: Annotated[list[str], _append]
    messages: Annotated[list[AnyMessage], add_messages]


def draft(state: State) -> dict:
    return {"log": [f"draft:{state['text']}"]}


def polish(state: State) -> dict:
    get_stream_writer()({"polishing": state["text"]})
    model = GenericFakeChatModel(messages=iter([AIMessage("polished three tokens")]))
    return {"log": ["polish"], "messages": [model.invoke(state["text"])]}


def review(state: State) -> dict:
    return {"log": ["review"]}


editor = (StateGraph(State).add_node("polish", polish).add_edge(START, "polish")
          .add_edge("polish", END).compile(name="editor"))
graph = (StateGraph(State).add_node("draft", draft).add_node("editor", editor)
         .add_node("review", review).add_edge(START, "draft").add_edge("draft", "editor")
         .add_edge("editor", "review").add_edge("review", END).compile(name="nested"))
