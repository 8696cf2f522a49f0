"""Custom auth as a LangGraph Platform project writes it (the documented owner-only pattern): a
bearer token names a user; every resource is stamped with its creator and filtered to it; a user
without the `write` permission only reads; the store's first namespace label is the user's own.

Tokens: `token-alice`, `token-bob` (writers, organisation acme), `token-carol` (reader)."""

from __future__ import annotations

from langgraph_sdk import Auth

auth = Auth()

USERS = {
    "token-alice": {"identity": "alice", "permissions": ["write"], "org": "acme"},
    "token-bob": {"identity": "bob", "permissions": ["write"], "org": "acme"},
    "token-carol": {"identity": "carol", "permissions": [], "org": "globex"},
}
WRITES = {"create", "update", "delete", "create_run", "put"}


@auth.authenticate
async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
    scheme, _, token = (authorization or "").partition(" ")
    user = USERS.get(token) if scheme.lower() == "bearer" else None
    if user is None:
        raise Auth.exceptions.HTTPException(status_code=401, detail="unknown or missing bearer token")
    return user


@auth.on
async def owner_only(ctx: Auth.types.AuthContext, value: dict) -> Auth.types.FilterType:
    if ctx.action in WRITES and "write" not in ctx.permissions:
        raise Auth.exceptions.HTTPException(status_code=403, detail="read-only user")
    owner = {"owner": ctx.user.identity}
    metadata = value.setdefault("metadata", {})
    if isinstance(metadata, dict):
        metadata.update(owner)
    return owner


@auth.on.store()
async def own_namespace(ctx: Auth.types.AuthContext, value: dict) -> None:
    namespace = value.get("namespace") or ()
    assert namespace and namespace[0] == ctx.user.identity, "the first label must be your identity"
