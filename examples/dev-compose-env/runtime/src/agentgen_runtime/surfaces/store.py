"""The store as each identity sees it: its own items only, the same from the API and from its runs.

Every namespace is stored under one more leading label, the identity of the caller (the API key's
hash; `anonymous` without keys): `("memories", "u1")` of key A is `("key-…", "memories", "u1")` in
PostgreSQL. `OwnedStore` adds the label to every operation and removes it from every answer, so
neither a client nor a graph ever sees it, and no operation can name another identity's items (a
namespace prefix, a search, a namespace listing all start below the label). Inside a run the
identity is the run's (its creator's, `OWNER`, set by the executor like the lease fence); the API
passes the caller's. `STORE_SCOPE=shared` serves one store for every key instead (as LangGraph
Platform does without custom auth; the layout agentgen-runtime used before it scoped the store).
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)

# The identity whose store a run's graph uses (None outside runs: the API names it explicitly).
OWNER: ContextVar[str | None] = ContextVar("agentgen_store_owner", default=None)


class NoOwner(RuntimeError):
    """A store operation outside any identity (fails closed instead of reaching every item)."""


class OwnedStore(BaseStore):
    """`inner` (the PostgreSQL store) scoped to an identity: `OWNER` inside runs, or the identity
    given to `for_owner` (the API's)."""

    def __init__(self, inner: BaseStore, owner: str | None = None) -> None:
        self.inner, self.owner = inner, owner
        # what LangGraph and the API read from a store
        self.supports_ttl = getattr(inner, "supports_ttl", False)
        self.ttl_config = getattr(inner, "ttl_config", None)
        self.index_config = getattr(inner, "index_config", None)

    def for_owner(self, owner: str) -> OwnedStore:
        return OwnedStore(self.inner, owner)

    def _label(self) -> str:
        owner = self.owner or OWNER.get()
        if not owner:
            raise NoOwner("the store was used outside a run and without an identity")
        return owner

    # --- operations in, answers out ----------------------------------------------------------
    def _scoped(self, ops: list[Op], label: str) -> list[Op]:
        scoped: list[Op] = []
        for op in ops:
            if isinstance(op, GetOp | PutOp):
                scoped.append(op._replace(namespace=(label, *op.namespace)))
            elif isinstance(op, SearchOp):
                scoped.append(op._replace(namespace_prefix=(label, *op.namespace_prefix)))
            elif isinstance(op, ListNamespacesOp):
                conditions = list(op.match_conditions or ())
                if any(c.match_type == "prefix" for c in conditions):
                    conditions = [c._replace(path=(label, *c.path)) if c.match_type == "prefix"
                                  else c for c in conditions]
                else:
                    conditions.insert(0, MatchCondition(match_type="prefix", path=(label,)))
                depth = None if op.max_depth is None else op.max_depth + 1
                scoped.append(op._replace(match_conditions=tuple(conditions), max_depth=depth))
            else:
                raise TypeError(f"unknown store operation {type(op).__name__}")
        return scoped

    @staticmethod
    def _unscoped(ops: list[Op], results: list[Result]) -> list[Result]:
        answers: list[Result] = []
        for op, result in zip(ops, results, strict=True):
            if isinstance(op, ListNamespacesOp):
                answers.append([tuple(ns[1:]) for ns in result])  # type: ignore[union-attr]
            elif isinstance(op, SearchOp):
                answers.append([_below(item) for item in result])  # type: ignore[union-attr]
            elif isinstance(op, GetOp):
                answers.append(None if result is None else _below(result))  # type: ignore[arg-type]
            else:
                answers.append(result)
        return answers

    async def abatch(self, ops: Any) -> list[Result]:
        ops = list(ops)
        return self._unscoped(ops, await self.inner.abatch(self._scoped(ops, self._label())))

    def batch(self, ops: Any) -> list[Result]:
        ops = list(ops)
        return self._unscoped(ops, self.inner.batch(self._scoped(ops, self._label())))

    async def start_ttl_sweeper(self) -> asyncio.Task[None]:  # the inner store sweeps every item
        return await self.inner.start_ttl_sweeper()  # type: ignore[attr-defined]


def _below(item: Item) -> Item:
    """An item as its owner sees it: its namespace without the identity label."""
    if isinstance(item, SearchItem):
        return SearchItem(namespace=item.namespace[1:], key=item.key, value=item.value,
                          created_at=item.created_at, updated_at=item.updated_at, score=item.score)
    return Item(namespace=item.namespace[1:], key=item.key, value=item.value,
                created_at=item.created_at, updated_at=item.updated_at)


def item_json(item: Item | None) -> dict[str, Any] | None:
    """An item as the Platform answers it (a search's with its `score`)."""
    return None if item is None else item.dict()
