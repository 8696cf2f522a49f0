"""Assistants: one per graph of langgraph.json (the Platform's system assistants, same ids)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from ..models import AssistantSearch
from ..service import Service
from .deps import Svc

router = APIRouter(tags=["assistants"])


@router.post("/assistants/search")
async def search_assistants(body: AssistantSearch, svc: Svc) -> list[dict[str, Any]]:
    graphs = [
        g
        for g in svc.graphs.values()
        if body.graph_id in (None, g.graph_id) and body.name in (None, g.graph_id)
    ]
    return [Service.assistant(g) for g in graphs[body.offset : body.offset + body.limit]]


@router.get("/assistants/{assistant_id}")
async def get_assistant(assistant_id: str, svc: Svc) -> dict[str, Any]:
    return Service.assistant(svc.graph_for(assistant_id))


@router.get("/assistants/{assistant_id}/schemas")
async def get_schemas(assistant_id: str, svc: Svc) -> dict[str, Any]:
    return svc.graph_for(assistant_id).schemas()


def _xray(value: str) -> bool | int:
    """`xray` as the SDK sends it: true/false, or a depth."""
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered.isdigit():
        return int(lowered)
    raise HTTPException(422, f"xray: expected true, false or a depth (a whole number), got {value!r}")


@router.get("/assistants/{assistant_id}/graph")
async def get_graph(assistant_id: str, svc: Svc, xray: str = "false") -> dict[str, Any]:
    return svc.graph_for(assistant_id).drawing(_xray(xray))


@router.get("/assistants/{assistant_id}/subgraphs")
async def get_subgraphs(assistant_id: str, svc: Svc, recurse: bool = False) -> dict[str, Any]:
    return svc.graph_for(assistant_id).subgraphs(None, recurse)


@router.get("/assistants/{assistant_id}/subgraphs/{namespace}")
async def get_subgraphs_in(assistant_id: str, namespace: str, svc: Svc,
                           recurse: bool = False) -> dict[str, Any]:
    return svc.graph_for(assistant_id).subgraphs(namespace, recurse)
