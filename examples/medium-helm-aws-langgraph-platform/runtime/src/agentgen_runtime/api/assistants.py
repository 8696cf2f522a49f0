"""Assistants: the graphs' system assistants (one per graph of langgraph.json, the Platform's ids)
and assistants created through the API (versioned configurations of a graph, the caller's own)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, Response

from ..models import (
    AssistantCount,
    AssistantCreate,
    AssistantLatest,
    AssistantSearch,
    AssistantUpdate,
    AssistantVersions,
)
from ..ownership import Scope, assistant_not_found
from ..service import Service
from .deps import Caller, Svc

router = APIRouter(tags=["assistants"])


@router.post("/assistants")
async def create_assistant(body: AssistantCreate, svc: Svc, caller: Caller) -> dict[str, Any]:
    if body.graph_id not in svc.graphs:
        raise HTTPException(404, f"graph {body.graph_id!r} not found (langgraph.json graphs: "
                                 f"{', '.join(sorted(svc.graphs))})")
    assistant_id = body.assistant_id or str(uuid.uuid4())
    if svc.system_graph(assistant_id) is not None:
        raise HTTPException(409, f"assistant {assistant_id} already exists (a graph's system assistant)")
    value = {"assistant_id": assistant_id, "graph_id": body.graph_id, "config": body.config,
             "context": body.context, "metadata": body.metadata, "name": body.name or "Untitled"}
    scope = await caller.authorize("assistants", "create", value)
    row = await svc.assistants.create(scope, {
        "assistant_id": assistant_id, "graph_id": body.graph_id, "name": body.name or "Untitled",
        "description": body.description, "config": body.config, "context": body.context,
        "metadata": value.get("metadata") or {}}, body.if_exists)
    return Service.assistant_json(row)


@router.post("/assistants/search")
async def search_assistants(body: AssistantSearch, svc: Svc, caller: Caller) -> list[dict[str, Any]]:
    sort_by = body.sort_by or "created_at"
    descending = (body.sort_order or "desc") == "desc"
    scope = await caller.authorize("assistants", "search", {
        "graph_id": body.graph_id, "metadata": body.metadata, "limit": body.limit,
        "offset": body.offset})
    stored = await svc.assistants.search(scope, graph_id=body.graph_id, name=body.name,
                                         metadata=body.metadata, sort_by=sort_by,
                                         descending=descending, limit=body.offset + body.limit)
    found = [Service.assistant_json(row) for row in stored] + [
        a for a in (Service.assistant_json_of(g) for g in svc.graphs.values())
        if body.graph_id in (None, a["graph_id"]) and body.name in (None, a["name"])
        and body.metadata.items() <= a["metadata"].items() and scope.visible(a["metadata"])]
    found.sort(key=lambda a: str(a[sort_by] or ""), reverse=descending)
    page = found[body.offset:body.offset + body.limit]
    if body.select:
        page = [{key: a[key] for key in body.select} for a in page]
    return page


@router.post("/assistants/count")
async def count_assistants(body: AssistantCount, svc: Svc, caller: Caller) -> int:
    scope = await caller.authorize("assistants", "search", {
        "graph_id": body.graph_id, "metadata": body.metadata, "limit": 0, "offset": 0})
    system = sum(1 for a in (Service.assistant_json_of(g) for g in svc.graphs.values())
                 if body.graph_id in (None, a["graph_id"]) and body.name in (None, a["name"])
                 and body.metadata.items() <= a["metadata"].items() and scope.visible(a["metadata"]))
    return system + await svc.assistants.count(scope, graph_id=body.graph_id, name=body.name,
                                               metadata=body.metadata)


@router.get("/assistants/{assistant_id}")
async def get_assistant(assistant_id: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    return (await _read(svc, caller, assistant_id))[1]


async def _read(svc: Service, caller: Scope, assistant_id: str) -> tuple[Any, dict[str, Any]]:
    """The assistant and its graph, as the caller's assistants.read handler lets it see them."""
    scope = await caller.authorize("assistants", "read", {"assistant_id": assistant_id})
    graph, assistant = await svc.assistant(scope, assistant_id)
    if not scope.visible(assistant["metadata"]):  # a system assistant the filter hides
        raise assistant_not_found(assistant_id)
    return graph, assistant


@router.patch("/assistants/{assistant_id}")
async def update_assistant(assistant_id: str, body: AssistantUpdate, svc: Svc,
                           caller: Caller) -> dict[str, Any]:
    svc.refuse_system(assistant_id)
    if body.graph_id is not None and body.graph_id not in svc.graphs:
        raise HTTPException(404, f"graph {body.graph_id!r} not found")
    changes = body.model_dump(exclude_unset=True)
    value = {"assistant_id": assistant_id, **{k: changes.get(k) for k in (
        "graph_id", "config", "context", "metadata", "name")}}
    scope = await caller.authorize("assistants", "update", value)
    if value.get("metadata") is not None:  # (stamped by the handler)
        changes["metadata"] = value["metadata"]
    row = await svc.assistants.update(scope, assistant_id, changes)
    return Service.assistant_json(row)


@router.delete("/assistants/{assistant_id}", status_code=204)
async def delete_assistant(assistant_id: str, svc: Svc, caller: Caller,
                           delete_threads: bool = False) -> Response:
    svc.refuse_system(assistant_id)
    await svc.assistants.delete(await caller.authorize("assistants", "delete",
                                                       {"assistant_id": assistant_id}), assistant_id)
    if delete_threads:  # the caller's threads this assistant ran on, with their checkpoints
        threads = await caller.authorize("threads", "delete", {"assistant_id": assistant_id})
        await svc.threads.prune(threads, await svc.threads.of_assistant(threads, assistant_id), False)
    return Response(status_code=204)


@router.post("/assistants/{assistant_id}/versions")
async def assistant_versions(assistant_id: str, body: AssistantVersions, svc: Svc,
                             caller: Caller) -> list[dict[str, Any]]:
    scope = await caller.authorize("assistants", "read", {"assistant_id": assistant_id})
    graph = svc.system_graph(assistant_id)
    if graph is not None:
        system = Service.assistant_json_of(graph)
        if not scope.visible(system["metadata"]):
            raise assistant_not_found(assistant_id)
        system.pop("updated_at")
        return [system][body.offset:body.offset + body.limit]
    rows = await svc.assistants.versions(scope, assistant_id, body.metadata, body.limit, body.offset)
    return [Service.assistant_json(row, version=True) for row in rows]


@router.post("/assistants/{assistant_id}/latest")
async def set_latest_version(assistant_id: str, body: AssistantLatest, svc: Svc,
                             caller: Caller) -> dict[str, Any]:
    svc.refuse_system(assistant_id)
    scope = await caller.authorize("assistants", "update", {"assistant_id": assistant_id,
                                                            "version": body.version})
    return Service.assistant_json(await svc.assistants.set_latest(scope, assistant_id, body.version))


@router.get("/assistants/{assistant_id}/schemas")
async def get_schemas(assistant_id: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    return (await _read(svc, caller, assistant_id))[0].schemas()


def _xray(value: str) -> bool | int:
    """`xray` as the SDK sends it: true/false, or a depth."""
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered.isdigit():
        return int(lowered)
    raise HTTPException(422, f"xray: expected true, false or a depth (a whole number), got {value!r}")


@router.get("/assistants/{assistant_id}/graph")
async def get_graph(assistant_id: str, svc: Svc, caller: Caller, xray: str = "false") -> dict[str, Any]:
    return (await _read(svc, caller, assistant_id))[0].drawing(_xray(xray))


@router.get("/assistants/{assistant_id}/subgraphs")
async def get_subgraphs(assistant_id: str, svc: Svc, caller: Caller, recurse: bool = False) -> dict[str, Any]:
    return (await _read(svc, caller, assistant_id))[0].subgraphs(None, recurse)


@router.get("/assistants/{assistant_id}/subgraphs/{namespace}")
async def get_subgraphs_in(assistant_id: str, namespace: str, svc: Svc, caller: Caller,
                           recurse: bool = False) -> dict[str, Any]:
    return (await _read(svc, caller, assistant_id))[0].subgraphs(namespace, recurse)
