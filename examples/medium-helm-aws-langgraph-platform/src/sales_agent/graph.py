"""The agent graphs (edit them). Each compiled graph here is what langgraph.json exposes to
`langgraph dev` / LangGraph Platform, which bring their own persistence; the service binds them to its
Postgres checkpointer and store.

- `graph` ("agent"): answers the conversation with the configured chat model.
- `approval_graph` ("approval"): drafts an answer, then pauses for a human (`interrupt`); resume it
  with `Command(resume="yes")` to send the draft, or any other text to replace it.

Imports are absolute: LangGraph loads this file by path.
"""

from __future__ import annotations

from functools import lru_cache

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import interrupt

from sales_agent.llm import get_chat_model
from sales_agent.settings import get_settings


@lru_cache
def chat_model() -> BaseChatModel:
    return get_chat_model(get_settings())


async def agent(state: MessagesState, config: RunnableConfig) -> dict:
    """Answer the conversation so far with the configured chat model."""
    response = await chat_model().ainvoke(state["messages"], config)
    return {"messages": [response]}


def build_graph() -> StateGraph:
    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_edge(START, "agent")
    builder.add_edge("agent", END)
    return builder


async def review(state: MessagesState) -> dict:
    """Human in the loop: show the draft, wait for a decision."""
    draft = state["messages"][-1]
    decision = interrupt({"question": "Send this answer?", "draft": draft.text})
    if isinstance(decision, str) and decision.strip().lower() in {"yes", "y", "approve"}:
        return {}
    replacement = AIMessage(content=str(decision), id=draft.id)  # same id: replaces the draft
    return {"messages": [replacement]}


def build_approval_graph() -> StateGraph:
    builder = StateGraph(MessagesState)
    builder.add_node("draft", agent)
    builder.add_node("review", review)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "review")
    builder.add_edge("review", END)
    return builder


graph = build_graph().compile()
approval_graph = build_approval_graph().compile()
