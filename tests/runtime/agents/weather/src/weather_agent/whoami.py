"""A graph that answers who runs it: the authenticated user LangGraph Platform puts in the run's
config (`langgraph_auth_user`), read by attribute and by key as user code does both."""

from __future__ import annotations

from typing import TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    question: str
    who: str | None
    org: str | None
    user_id: str | None
    permissions: list[str]
    headers: dict[str, str]


def whoami(state: State, config: RunnableConfig) -> dict:
    configurable = config.get("configurable") or {}
    user = configurable.get("langgraph_auth_user")
    return {"who": user.identity if user is not None else None,
            "org": user["org"] if user is not None and "org" in user else None,
            "user_id": configurable.get("langgraph_auth_user_id"),
            "permissions": list(configurable.get("langgraph_auth_permissions") or []),
            # request headers langgraph.json http.configurable_headers lets through
            "headers": {k: v for k, v in configurable.items() if isinstance(v, str)
                        and (k.startswith("x-") or k in ("authorization", "user-agent"))}}


builder = StateGraph(State)
builder.add_node("whoami", whoami)
builder.add_edge(START, "whoami")
builder.add_edge("whoami", END)
graph = builder.compile(name="whoami")
