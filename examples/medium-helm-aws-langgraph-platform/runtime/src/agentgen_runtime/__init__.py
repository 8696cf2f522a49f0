"""agentgen-runtime: the LangGraph Platform API for the langgraph-sdk client on your own PostgreSQL.

`create_app()` (app.py) is the ASGI application; `agentgen-runtime` (__main__.py) serves it.
"""

__version__ = "0.2.0"
