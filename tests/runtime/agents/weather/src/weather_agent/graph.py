"""A graph with a context schema whose fields have defaults, reading its keys from os.environ at run
time (as LangChain integrations do). No LLM: the answer is computed from the context and the
environment, so that two servers can be compared exactly."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime


def _append(left: list[str], right: list[str]) -> list[str]:
    return [*left, *right]


class State(TypedDict):
    question: str
    answers: Annotated[list[str], _append]


@dataclass
class Context:
    model: str = "weather-model-1"
    city: str = "Lisbon"


def forecast(state: State, runtime: Runtime[Context]) -> dict:
    key = os.environ.get("WEATHER_API_KEY", "<no key>")
    units = os.environ.get("WEATHER_UNITS", "<no units>")
    answer = (f"{runtime.context.model} in {runtime.context.city} ({units}, key={key}): "
              f"{state['question']}")
    return {"answers": [answer]}


def explode(state: State) -> dict:
    raise ValueError(f"node failed on {state['question']!r}")


builder = StateGraph(State, context_schema=Context)
builder.add_node("forecast", forecast)
builder.add_edge(START, "forecast")
builder.add_edge("forecast", END)
graph = builder.compile(name="weather")

failing = StateGraph(State)
failing.add_node("explode", explode)
failing.add_edge(START, "explode")
failing.add_edge("explode", END)
failing_graph = failing.compile()
