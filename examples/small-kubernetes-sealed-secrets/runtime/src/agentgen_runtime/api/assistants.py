"""Assistants: one per graph of langgraph.json (the Platform's system assistants, same ids)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

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
