"""The store (long-term memory) as the SDK's `client.store` reaches it: put, get, delete, search
(with `query` when `langgraph.json` `store.index` is set) and list namespaces; each identity its own
items (see surfaces/store.py), the same its runs' graphs read and write."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response

from ..models import MAX_TTL_MINUTES, StoreDelete, StoreNamespaces, StorePut, StoreSearch
from ..ownership import Scope
from ..surfaces.store import OwnedStore, item_json
from .deps import Caller

router = APIRouter(tags=["store"])


def _store(request: Request, caller: Scope) -> Any:
    store = request.app.state.service.store
    return store.for_owner(caller.owner) if isinstance(store, OwnedStore) else store


async def _authorized(caller: Scope, action: str, value: dict[str, Any]) -> dict[str, Any] | None:
    """The store handler's filter for `action`, `value`'s namespace (and suffix) as it left them
    checked (custom auth may move a namespace, e.g. under the user's identity)."""
    scope = await caller.authorize("store", action, value)
    for name in ("namespace", "suffix"):
        labels = value.get(name)
        if labels is None and (name == "suffix" or action == "list_namespaces"):
            continue
        if not isinstance(labels, list | tuple) or not all(
                isinstance(label, str) and label and "." not in label for label in labels):
            raise HTTPException(422, f"{name}: labels (strings, none empty, without periods), as "
                                     f"the store.{action} handler left it: {labels!r}")
        value[name] = tuple(labels)
    return scope.filter


def _namespace(text: str) -> tuple[str, ...]:
    labels = tuple(text.split("."))
    if not text or not all(labels):
        raise HTTPException(422, "namespace: labels separated by periods, none empty (a.b.c)")
    return labels


@router.put("/store/items", status_code=204)
async def put_item(body: StorePut, request: Request, caller: Caller) -> Response:
    store = _store(request, caller)
    value = {"namespace": tuple(body.namespace), "key": body.key, "value": body.value,
             "index": body.index, "ttl": body.ttl}
    await _authorized(caller, "put", value)
    options: dict[str, Any] = {}
    if value["ttl"] is not None:  # (as the store.put handler left it, like the rest)
        if not getattr(store, "supports_ttl", False):
            raise HTTPException(422, "ttl: this server's store has no item TTLs (its "
                                     "langgraph-checkpoint-postgres is too old); put it without")
        ttl = value["ttl"]
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= MAX_TTL_MINUTES:
            raise HTTPException(422, f"ttl: minutes, more than 0 and at most {MAX_TTL_MINUTES}")
        options["ttl"] = ttl
    if value["index"] is not None:
        options["index"] = value["index"]
    await store.aput(value["namespace"], value["key"], value["value"], **options)
    return Response(status_code=204)


@router.get("/store/items")
async def get_item(
    request: Request,
    caller: Caller,
    namespace: str,
    key: Annotated[str, Query(min_length=1)],
    refresh_ttl: bool | None = None,
) -> Any:
    value = {"namespace": _namespace(namespace), "key": key, "refresh_ttl": refresh_ttl}
    await _authorized(caller, "get", value)
    item = await _store(request, caller).aget(value["namespace"], value["key"],
                                              refresh_ttl=value["refresh_ttl"])
    return item_json(item)


@router.delete("/store/items", status_code=204)
async def delete_item(body: StoreDelete, request: Request, caller: Caller) -> Response:
    value = {"namespace": tuple(body.namespace), "key": body.key}
    await _authorized(caller, "delete", value)
    await _store(request, caller).adelete(value["namespace"], value["key"])
    return Response(status_code=204)


@router.post("/store/items/search")
async def search_items(body: StoreSearch, request: Request, caller: Caller) -> dict[str, Any]:
    value = {"namespace": tuple(body.namespace_prefix), "filter": body.filter, "limit": body.limit,
             "offset": body.offset, "query": body.query, "refresh_ttl": body.refresh_ttl}
    found = await _authorized(caller, "search", value)
    if found:  # the handler's filter wins over the client's on a key both name
        value["filter"] = {**(value["filter"] or {}), **found}
    items = await _store(request, caller).asearch(
        value["namespace"], query=value["query"], filter=value["filter"], limit=value["limit"],
        offset=value["offset"], refresh_ttl=value["refresh_ttl"])
    return {"items": [item_json(item) for item in items]}


@router.post("/store/namespaces")
async def list_namespaces(body: StoreNamespaces, request: Request, caller: Caller) -> dict[str, Any]:
    value = {"namespace": tuple(body.prefix) if body.prefix else None,
             "suffix": tuple(body.suffix) if body.suffix else None, "max_depth": body.max_depth,
             "limit": body.limit, "offset": body.offset}
    await _authorized(caller, "list_namespaces", value)
    namespaces = await _store(request, caller).alist_namespaces(
        prefix=value["namespace"], suffix=value["suffix"], max_depth=value["max_depth"],
        limit=value["limit"], offset=value["offset"])
    return {"namespaces": [list(ns) for ns in namespaces]}
