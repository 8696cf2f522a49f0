"""research-agent: a LangGraph agent, deployed with agentgen (the server is agentgen-runtime, in runtime/)."""

__version__ = "0.1.0"
