"""A graph factory taking the run's config, called for every run (as LangGraph Platform does)."""

from __future__ import annotations

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from weather_agent.graph import State


def make_graph(config: RunnableConfig):
    flavour = (config.get("configurable") or {}).get("flavour", "plain")

    def answer(state: State) -> dict:
        return {"answers": [f"{flavour}: {state['question']}"]}

    builder = StateGraph(State)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", END)
    return builder.compile()
