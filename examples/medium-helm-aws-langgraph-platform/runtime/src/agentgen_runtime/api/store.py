"""The store (long-term memory) as the SDK's `client.store` reaches it: put, get, delete, search
(with `query` when `langgraph.json` `store.index` is set) and list namespaces; each identity its own
items (see store.py), the same its runs' graphs read and write."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response

from ..models import StoreDelete, StoreNamespaces, StorePut, StoreSearch
from ..ownership import Scope
from ..store import OwnedStore, item_json
from .deps import Caller

router = APIRouter(tags=["store"])


def _store(request: Request, caller: Scope) -> Any:
    store = request.app.state.service.store
    return store.for_owner(caller.owner) if isinstance(store, OwnedStore) else store


def _namespace(text: str) -> tuple[str, ...]:
    labels = tuple(text.split("."))
    if not text or not all(labels):
        raise HTTPException(422, "namespace: labels separated by periods, none empty (a.b.c)")
    return labels


@router.put("/store/items", status_code=204)
async def put_item(body: StorePut, request: Request, caller: Caller) -> Response:
    store = _store(request, caller)
    options: dict[str, Any] = {}
    if body.ttl is not None:
        if not getattr(store, "supports_ttl", False):
            raise HTTPException(422, "ttl: this server's store has no item TTLs (its "
                                     "langgraph-checkpoint-postgres is too old); put it without")
        options["ttl"] = body.ttl
    if body.index is not None:
        options["index"] = body.index
    await store.aput(tuple(body.namespace), body.key, body.value, **options)
    return Response(status_code=204)


@router.get("/store/items")
async def get_item(
    request: Request,
    caller: Caller,
    namespace: str,
    key: Annotated[str, Query(min_length=1)],
    refresh_ttl: bool | None = None,
) -> Any:
    item = await _store(request, caller).aget(_namespace(namespace), key, refresh_ttl=refresh_ttl)
    return item_json(item)


@router.delete("/store/items", status_code=204)
async def delete_item(body: StoreDelete, request: Request, caller: Caller) -> Response:
    await _store(request, caller).adelete(tuple(body.namespace), body.key)
    return Response(status_code=204)


@router.post("/store/items/search")
async def search_items(body: StoreSearch, request: Request, caller: Caller) -> dict[str, Any]:
    items = await _store(request, caller).asearch(
        tuple(body.namespace_prefix), query=body.query, filter=body.filter, limit=body.limit,
        offset=body.offset, refresh_ttl=body.refresh_ttl)
    return {"items": [item_json(item) for item in items]}


@router.post("/store/namespaces")
async def list_namespaces(body: StoreNamespaces, request: Request, caller: Caller) -> dict[str, Any]:
    namespaces = await _store(request, caller).alist_namespaces(
        prefix=tuple(body.prefix) if body.prefix else None,
        suffix=tuple(body.suffix) if body.suffix else None,
        max_depth=body.max_depth, limit=body.limit, offset=body.offset)
    return {"namespaces": [list(ns) for ns in namespaces]}
