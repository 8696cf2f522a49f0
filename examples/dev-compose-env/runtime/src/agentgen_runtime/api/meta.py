"""What the server is: `/info`, which LangGraph Studio and the SDK read before anything else."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter

router = APIRouter(tags=["meta"])


def _version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


@router.get("/info")
async def info() -> dict[str, Any]:
    # flags say what a client may offer: crons are not served by this runtime yet, so Studio
    # does not offer them; assistants are data (create, versions, latest).
    return {"version": _version("agentgen-runtime"), "langgraph_py_version": _version("langgraph"),
            "flags": {"assistants": True, "crons": False, "langsmith": False,
                      "langsmith_tracing_replicas": False},
            "host": {"kind": "self-hosted", "project_id": None, "host_revision_id": None,
                     "revision_id": None, "tenant_id": None}}
