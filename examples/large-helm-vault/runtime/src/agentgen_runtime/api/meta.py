"""What the server is: `/info`, which LangGraph Studio and the SDK read before anything else."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Request

router = APIRouter(tags=["meta"])


def _version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


@router.get("/info")
async def info(request: Request) -> dict[str, Any]:
    # flags say what a client may offer (Studio hides what is false): crons are served unless
    # langgraph.json http.disable_runs takes them away; assistants are data (create, versions).
    disabled = request.app.state.config.http.disabled
    return {"version": _version("agentgen-runtime"), "langgraph_py_version": _version("langgraph"),
            "flags": {"assistants": "assistants" not in disabled, "crons": "runs" not in disabled,
                      "langsmith": False,
                      "langsmith_tracing_replicas": False},
            "host": {"kind": "self-hosted", "project_id": None, "host_revision_id": None,
                     "revision_id": None, "tenant_id": None}}
