"""A graph with a subgraph (for Studio's contract: drawing with xray, subgraphs, schemas, and every
stream mode from inside the subgraph: a chat model's tokens, a custom event), and `gate`, whose
subgraph stops for a decision (an interrupt inside a subgraph, for the streaming protocol)."""

from __future__ import annotations

from typing import Annotated, TypedDict

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph, add_messages
from langgraph.types import interrupt


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


def ask(state: State) -> dict:
    decision = interrupt({"question": f"publish {state['text']}?"})
    return {"log": [f"decision:{decision}"]}


gatekeeper = (StateGraph(State).add_node("ask", ask).add_edge(START, "ask").add_edge("ask", END)
              .compile(name="gatekeeper"))
gate = (StateGraph(State).add_node("draft", draft).add_node("gatekeeper", gatekeeper)
        .add_edge(START, "draft").add_edge("draft", "gatekeeper").add_edge("gatekeeper", END)
        .compile(name="gate"))
