"""Unit tests of the graph's nodes with the offline `fake` model (no network, no database)."""

import asyncio

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from research_agent.graph import build_graph
from research_agent.llm import EchoChatModel


def test_echo_model_is_deterministic_and_reports_usage():
    model = EchoChatModel()
    first = model.invoke([HumanMessage("hello there")])
    second = model.invoke([HumanMessage("hello there")])
    assert first.content == second.content == "Echo: hello there"
    assert first.usage_metadata["total_tokens"] > 0


def test_graph_answers_and_keeps_the_conversation_per_thread():
    graph = build_graph().compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t1"}}

    async def run():
        await graph.ainvoke({"messages": [HumanMessage("one")]}, config)
        return await graph.ainvoke({"messages": [HumanMessage("two")]}, config)

    state = asyncio.run(run())
    assert [m.content for m in state["messages"]] == ["one", "Echo: one", "two", "Echo: two"]
