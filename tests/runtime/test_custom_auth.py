"""Custom auth (langgraph.json `auth.path`, a `langgraph_sdk.Auth` object) with the Platform's
semantics, fail closed.

The handler file is the test agent's `weather_agent/auth.py`, written as the Platform documents it:
bearer tokens name users, every resource is stamped with its creator and filtered to it, a reader
cannot write, the store's first namespace label is the user's own. Every operation of the SDK is
tried by one user on another's thread, run, assistant, cron and store items, across two runtime
processes on one database, then the same scenario runs under `langgraph dev` with the same file and
the answers are compared. The library parts (what a handler may return, the filter in SQL and in
Python) are tested without a server."""

from __future__ import annotations

import asyncio
import inspect
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from agentgen_runtime.graphs import ASSISTANT_NAMESPACE

from ..servers import free_port, output
from .helpers import WEATHER, langgraph_dev, runtime_env, runtime_server

AUTH_CONFIG = WEATHER / "langgraph.auth.json"
INPUT = {"question": "rain?", "answers": []}


# --- the library: handlers' answers, filters ---------------------------------------------------

def _handlers(auth: Any):
    from agentgen_runtime.auth.handlers import Handlers

    return Handlers(auth, "test")


def _user(identity: str = "alice", **extra: Any):
    from agentgen_runtime.auth.handlers import AuthUser, user_data

    return AuthUser(user_data({"identity": identity, **extra}))


def test_what_a_handler_returns_decides_and_failures_close():
    """None/True allow unfiltered, a dict filters, False is 403, an assertion 403, the SDK's
    HTTPException its own status; a handler that raises anything else, or returns a filter that
    is not one, is a 500: never an open door. The most specific handler runs."""
    from fastapi import HTTPException
    from langgraph_sdk import Auth

    auth = Auth()

    @auth.authenticate
    async def authenticate(authorization: str | None) -> str:
        return "alice"

    answers: dict[str, Any] = {
        "none": None, "true": True, "false": False, "filter": {"owner": "alice"},
        "list": ["owner"], "bad op": {"owner": {"$regex": "a.*"}}, "short or": {"$or": [{"a": 1}]},
        "deep": {"$or": [{"$or": [{"$or": [{"a": 1}, {"b": 2}]}, {"c": 3}]}, {"d": 4}]},
    }

    @auth.on.threads.read
    async def read(ctx: Auth.types.AuthContext, value: dict) -> Any:
        case = value["case"]
        if case == "raise":
            raise RuntimeError("bug in the handler")
        if case == "assert":
            raise AssertionError("not yours")
        if case == "http":
            raise Auth.exceptions.HTTPException(status_code=418, detail="teapot")
        return answers[case]

    @auth.on.threads
    async def threads_any(ctx: Auth.types.AuthContext, value: dict) -> Any:
        return {"resource": "threads"}

    @auth.on
    async def everything(ctx: Auth.types.AuthContext, value: dict) -> Any:
        return {"global": ctx.resource}

    handlers = _handlers(auth)

    async def outcome(resource: str, action: str, case: str = "") -> Any:
        try:
            return await handlers.authorize(_user(), resource, action, {"case": case})
        except HTTPException as exc:
            return exc.status_code

    got = {case: asyncio.run(outcome("threads", "read", case))
           for case in [*answers, "raise", "assert", "http"]}
    assert got == {"none": None, "true": None, "false": 403, "filter": {"owner": "alice"},
                   "list": 500, "bad op": 500, "short or": 500, "deep": 500, "raise": 500,
                   "assert": 403, "http": 418}
    assert asyncio.run(outcome("threads", "delete")) == {"resource": "threads"}
    assert asyncio.run(outcome("crons", "read")) == {"global": "crons"}


def test_the_authenticate_handler_user_shapes():
    """A string, a dict with identity, (permissions, user), an object with .identity: each a user;
    anything else (or an empty identity) is refused."""
    from agentgen_runtime.auth.handlers import user_data

    class Account:
        identity = "dave"
        permissions = ["read"]

    assert user_data("alice")["identity"] == "alice"
    assert user_data({"identity": "bob", "org": "acme"})["org"] == "acme"
    assert user_data((["write"], "carol"))["permissions"] == ["write"]
    assert user_data(Account())["permissions"] == ["read"]
    for bad in (None, 42, {"name": "x"}, {"identity": ""}, ("a", "b", "c"),
                {"identity": "x", "permissions": "write"}):
        with pytest.raises(ValueError):
            user_data(bad)
    user = _user("erin", org="acme", permissions=["write"])
    assert (user.identity, user.org, user["org"], user.permissions, user.display_name) == (
        "erin", "acme", "acme", ["write"], "erin")


FILTER_CASES = [
    ({"owner": "alice"}, {"owner": "alice", "x": 1}, True),
    ({"owner": "alice"}, {"owner": "bob"}, False),
    ({"owner": "alice"}, {}, False),
    ({"owner": {"$eq": "alice"}}, {"owner": "alice"}, True),
    ({"n": 1}, {"n": 1.0}, True),
    ({"tags": {"$contains": "a"}}, {"tags": ["a", "b"]}, True),
    ({"tags": {"$contains": ["a", "c"]}}, {"tags": ["a", "b"]}, False),
    ({"tags": {"$contains": "a"}}, {"tags": "a"}, False),
    ({"tags": {"$contains": {"k": 1}}}, {"tags": [{"k": 1, "j": 2}]}, False),  # equal, not contained
    ({"$or": [{"owner": "alice"}, {"shared": True}]}, {"owner": "bob", "shared": True}, True),
    ({"$or": [{"owner": "alice"}, {"shared": True}]}, {"owner": "bob"}, False),
    ({"$and": [{"owner": "alice"}, {"org": "acme"}], "x": 1},
     {"owner": "alice", "org": "acme", "x": 1}, True),
    ({"$and": [{"owner": "alice"}, {"org": "acme"}]}, {"owner": "alice", "org": "globex"}, False),
    ({"cfg": {"deep": [1, 2]}}, {"cfg": {"deep": [1, 2]}}, True),
    ({"cfg": {"deep": [1]}}, {"cfg": {"deep": [1, 2]}}, False),
]


@pytest.mark.slow
def test_a_filter_means_the_same_in_sql_and_in_python(database):
    """The filter every scoped statement applies (agent_metadata_match, in PostgreSQL) and the one
    applied to what is not a row (the graphs' system assistants) agree, case by case, and match the
    Platform's meaning (equality, not containment)."""
    import psycopg
    from agentgen_runtime.auth.handlers import check_filter, matches
    from agentgen_runtime.ownership import MATCH_FUNCTION
    from psycopg.types.json import Jsonb

    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(MATCH_FUNCTION)
        for filters, metadata, expected in FILTER_CASES:
            check_filter(filters)
            in_sql = conn.execute("SELECT agent_metadata_match(%s, %s)",
                                  (Jsonb(metadata), Jsonb(filters))).fetchone()[0]
            assert (in_sql, matches(metadata, filters)) == (expected, expected), (filters, metadata)


# --- the scenario: one user against another's everything ---------------------------------------

def _client(url: str, token: str | None):
    from langgraph_sdk import get_client

    return get_client(url=url, api_key=None,
                      headers={"Authorization": f"Bearer {token}"} if token else None)


async def _outcome(call: Any) -> Any:
    """"ok" or what the test reads off a success; an error's HTTP status."""
    import httpx

    try:
        return await call
    except httpx.HTTPStatusError as exc:
        return exc.response.status_code


async def _stream_status(stream: Any) -> Any:
    """"ok" when the stream opens (a part arrives, or none within 5 s), else the status it was
    refused with."""
    async def first() -> None:
        parts = await stream if inspect.isawaitable(stream) else stream  # (threads.join_stream)
        async for _ in parts:
            break

    try:
        await asyncio.wait_for(first(), 5)
        return "ok"
    except TimeoutError:
        return "ok"
    except Exception as exc:  # noqa: BLE001 - the status the SDK raised with
        response = getattr(exc, "response", None)
        return response.status_code if response is not None else type(exc).__name__


async def scenario(url_a: str, url_b: str) -> dict[str, Any]:
    """Alice makes one of everything on `url_a`; Bob (on `url_b`), Carol (a reader), no token and
    a wrong token try every operation on them. Returns each operation's outcome."""
    alice, bob = _client(url_a, "token-alice"), _client(url_b, "token-bob")
    carol = _client(url_b, "token-carol")
    seen: dict[str, Any] = {}
    thread = await alice.threads.create(metadata={"topic": "weather"})
    tid = thread["thread_id"]
    seen["created thread owner"] = thread["metadata"].get("owner")
    await alice.runs.wait(tid, "weather", input=INPUT)
    run = await alice.runs.create(tid, "weather", input=INPUT)
    rid = run["run_id"]
    await alice.runs.join(tid, rid)
    assistant = await alice.assistants.create(graph_id="weather", name="alice's")
    aid = assistant["assistant_id"]
    seen["created assistant owner"] = assistant["metadata"].get("owner")
    cron = await alice.crons.create_for_thread(tid, "weather", schedule="0 0 1 1 *", input=INPUT)
    seen["created cron owner"] = (cron.get("metadata") or {}).get("owner")
    await alice.store.put_item(["alice", "notes"], "k", {"v": 1})

    probes = {
        "threads.get": lambda: bob.threads.get(tid),
        "threads.update": lambda: bob.threads.update(tid, metadata={"topic": "mine"}),
        "threads.copy": lambda: bob.threads.copy(tid),
        "threads.get_state": lambda: bob.threads.get_state(tid),
        "threads.update_state": lambda: bob.threads.update_state(tid, {"question": "x"}),
        "threads.get_history": lambda: bob.threads.get_history(tid),
        "runs.list": lambda: bob.runs.list(tid),
        "runs.get": lambda: bob.runs.get(tid, rid),
        "runs.create": lambda: bob.runs.create(tid, "weather", input=INPUT),
        "runs.join": lambda: bob.runs.join(tid, rid),
        "runs.cancel": lambda: bob.runs.cancel(tid, rid),
        "runs.delete": lambda: bob.runs.delete(tid, rid),
        "assistants.get": lambda: bob.assistants.get(aid),
        "assistants.update": lambda: bob.assistants.update(aid, name="bob's"),
        "assistants.get_versions": lambda: bob.assistants.get_versions(aid),
        "assistants.set_latest": lambda: bob.assistants.set_latest(aid, 1),
        "assistants.get_graph": lambda: bob.assistants.get_graph(aid),
        "assistants.get_schemas": lambda: bob.assistants.get_schemas(aid),
        "assistants.delete": lambda: bob.assistants.delete(aid),
        "crons.update": lambda: bob.crons.update(cron["cron_id"], schedule="0 0 2 1 *"),
        "crons.delete": lambda: bob.crons.delete(cron["cron_id"]),
        "store.get_item": lambda: bob.store.get_item(["alice", "notes"], "k"),
        "store.put_item": lambda: bob.store.put_item(["alice", "notes"], "k", {"v": 2}),
        "store.delete_item": lambda: bob.store.delete_item(["alice", "notes"], "k"),
        "store.search_items": lambda: bob.store.search_items(["alice"]),
        "store.list_namespaces": lambda: bob.store.list_namespaces(prefix=["alice"]),
        "threads.delete": lambda: bob.threads.delete(tid),
    }
    for name, probe in probes.items():
        got = await _outcome(probe())
        seen[f"bob {name}"] = got if isinstance(got, int) else "ok"
    seen["bob runs.join_stream"] = await _stream_status(bob.runs.join_stream(tid, rid))
    seen["bob runs.stream"] = await _stream_status(bob.runs.stream(tid, "weather", input=INPUT))
    seen["bob threads.join_stream"] = await _stream_status(bob.threads.join_stream(tid))
    found = [t["thread_id"] for t in await bob.threads.search(limit=100)]
    seen["bob threads.search finds it"] = tid in found
    seen["bob threads.count"] = await bob.threads.count()
    found = [a["assistant_id"] for a in await bob.assistants.search(limit=100)]
    seen["bob assistants.search finds it"] = aid in found
    seen["bob assistants.count"] = await bob.assistants.count()
    seen["bob crons.search finds it"] = cron["cron_id"] in [c["cron_id"] for c in await bob.crons.search()]
    seen["bob crons.count"] = await bob.crons.count()

    # Bob's own, beside Alice's
    own = await bob.threads.create()
    seen["bob own thread owner"] = own["metadata"].get("owner")
    await bob.store.put_item(["bob", "notes"], "k", {"v": "bob"})
    seen["bob own store item"] = (await bob.store.get_item(["bob", "notes"], "k"))["value"]
    found = [t["thread_id"] for t in await bob.threads.search(limit=100)]
    seen["bob threads.search"] = found == [own["thread_id"]]
    seen["bob store.search_items"] = [i["key"] for i in (await bob.store.search_items(["bob"]))["items"]]

    # others: a reader, no token, a wrong token
    seen["carol threads.create"] = await _outcome(carol.threads.create())
    seen["carol threads.search"] = len(await carol.threads.search())
    seen["no token threads.search"] = await _outcome(_client(url_b, None).threads.search())
    seen["wrong token threads.search"] = await _outcome(_client(url_b, "token-mallory").threads.search())

    # Alice's are intact after all that
    seen["alice threads.get"] = (await alice.threads.get(tid))["metadata"]
    seen["alice runs.get"] = (await alice.runs.get(tid, rid))["status"]
    seen["alice assistants.get"] = (await alice.assistants.get(aid))["name"]
    seen["alice crons.count"] = await alice.crons.count()
    seen["alice store.get_item"] = (await alice.store.get_item(["alice", "notes"], "k"))["value"]

    # ctx.user reaches the graph (the run may run on either process); a client cannot set it
    spoof = {"configurable": {"langgraph_auth_user": {"identity": "mallory"},
                              "langgraph_auth_user_id": "mallory"}}
    seen["whoami"] = await bob.runs.wait(None, "whoami", input={"question": "?"}, config=spoof)
    await alice.crons.delete(cron["cron_id"])
    return seen


EXPECTED_OURS = {
    "created thread owner": "alice", "created assistant owner": "alice", "created cron owner": "alice",
    **{f"bob {name}": 404 for name in (
        "threads.get", "threads.update", "threads.copy", "threads.get_state", "threads.update_state",
        "threads.get_history", "runs.list", "runs.get", "runs.create", "runs.join", "runs.cancel",
        "runs.delete", "runs.join_stream", "runs.stream", "threads.join_stream", "assistants.get",
        "assistants.update",
        "assistants.get_versions", "assistants.set_latest", "assistants.get_graph",
        "assistants.get_schemas", "assistants.delete", "crons.update", "crons.delete",
        "threads.delete")},
    **{f"bob store.{name}": 403 for name in (
        "get_item", "put_item", "delete_item", "search_items", "list_namespaces")},
    "bob threads.search finds it": False, "bob threads.count": 0,
    "bob assistants.search finds it": False, "bob assistants.count": 0,
    "bob crons.search finds it": False, "bob crons.count": 0,
    "bob own thread owner": "bob", "bob own store item": {"v": "bob"}, "bob threads.search": True,
    "bob store.search_items": ["k"],
    "carol threads.create": 403, "carol threads.search": 0,
    "no token threads.search": 401, "wrong token threads.search": 401,
    "alice threads.get": {"topic": "weather", "owner": "alice", "graph_id": "weather",
                          "assistant_id": str(uuid.uuid5(ASSISTANT_NAMESPACE, "weather"))},
    "alice runs.get": "success", "alice assistants.get": "alice's", "alice crons.count": 1,
    "alice store.get_item": {"v": 1},
    "whoami": {"question": "?", "who": "bob", "org": "acme", "user_id": "bob", "permissions": ["write"],
               "headers": {}},
}


@pytest.mark.slow
def test_one_user_reaches_nothing_of_anothers_across_two_processes(database):
    """Every operation of the SDK by Bob on Alice's thread, runs, assistant, cron and store items
    is refused (404 as if missing; 403 from the store handler's assertion), searches and counts
    find nothing of hers, and afterwards all of hers is intact. The handler stamped each creation
    with its owner, and the graph sees the run's user (not the one the client put in its config).
    No API keys: the handler alone authenticates."""
    env = {"LANGGRAPH_CONFIG": str(AUTH_CONFIG), "API_KEYS": "", "RUN_LEASE_SECONDS": "5",
           "CRON_ALLOW_SECONDS": "true"}
    with runtime_server(database, **env) as a, runtime_server(database, **env) as b:
        ours = asyncio.run(scenario(a.base, b.base))
        ticked = asyncio.run(cron_runs_as_its_creator(a.base))
    wrong = {k: (ours.get(k), v) for k, v in EXPECTED_OURS.items() if ours.get(k) != v}
    assert not wrong, json.dumps(wrong, indent=1, default=str)
    assert ticked == {"who": "alice", "owner": "alice", "bob sees": []}, ticked


async def cron_runs_as_its_creator(url: str) -> dict[str, Any]:
    """A cron's tick runs as the user who created it (ctx.user in the graph), on a thread stamped
    with that user's metadata (on_run_completed=keep), which only that user finds."""
    alice, bob = _client(url, "token-alice"), _client(url, "token-bob")
    cron = await alice.crons.create("whoami", schedule="* * * * * *", input={"question": "tick"},
                                    metadata={"cron": "whoami"}, on_run_completed="keep")
    try:
        for _ in range(100):
            threads = await alice.threads.search(metadata={"cron": "whoami"}, status="idle")
            if threads:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the cron never ticked")
    finally:
        await alice.crons.delete(cron["cron_id"])
    values = (await alice.threads.get_state(threads[0]["thread_id"]))["values"]
    return {"who": values["who"], "owner": threads[0]["metadata"].get("owner"),
            "bob sees": await bob.threads.search(metadata={"cron": "whoami"})}


@pytest.mark.slow
def test_the_same_handler_file_answers_as_under_langgraph_dev(postgres, tmp_path):
    """The scenario under `langgraph dev` with the same langgraph.json and handler file: the same
    answers, operation by operation, but those listed with the reason they differ. (Each server
    starts empty: the scenario counts what the users find.)"""
    database = postgres.create_database("rt_auth_side_by_side")
    with runtime_server(database, LANGGRAPH_CONFIG=str(AUTH_CONFIG), API_KEYS="") as server:
        ours = asyncio.run(scenario(server.base, server.base))

    # a copy of the agent: dev keeps its state in .langgraph_api beside it (and reads auth.path
    # from its working directory), and this scenario counts what it finds
    agent = tmp_path / "weather"
    shutil.copytree(WEATHER, agent, ignore=shutil.ignore_patterns(".langgraph_api", "__pycache__"))
    with langgraph_dev(agent, agent / AUTH_CONFIG.name, install=WEATHER, WEATHER_API_KEY="k") as url:
        theirs = asyncio.run(scenario(url, url))

    report = [f"{'ok ' if ours[k] == theirs.get(k) else 'DIFF'} {k}: ours {ours[k]!r} | dev "
              f"{theirs.get(k)!r}" for k in ours]
    print("\n" + "\n".join(report))
    differ = {k for k in ours if ours[k] != theirs.get(k)}
    assert differ == set(DIFFERENT), "\n".join(r for r in report if r.startswith("DIFF"))


# Where langgraph dev answers otherwise, and why ours is kept.
DIFFERENT: dict[str, str] = {
    "bob runs.join_stream": "dev streams another user's finished run (its read filter is not "
                            "applied to a run that has ended); ours is 404 as every other read",
    "bob threads.join_stream": "dev opens another user's thread stream (no answer within 5 s, no "
                               "refusal); ours is 404 before the stream starts",
    "bob threads.copy": "dev answers 409 for a copy of another user's thread; ours 404, as the "
                        "thread is not the caller's (a 409 says it exists)",
}


def _config(tmp_path: Path, **http: Any) -> str:
    """The custom-auth agent's langgraph.json with `http` options, paths made absolute."""
    config = json.loads(AUTH_CONFIG.read_text())
    config["graphs"] = {k: v.replace("./", f"{WEATHER}/", 1) if v.startswith("./") else v
                        for k, v in config["graphs"].items()}
    config["auth"] = {"path": config["auth"]["path"].replace("./", f"{WEATHER}/", 1)}
    config["dependencies"] = [str(WEATHER)]
    config["http"] = {"app": config["http"]["app"].replace("./", f"{WEATHER}/", 1), **http}
    path = tmp_path / f"langgraph.{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps(config))
    return str(path)


@pytest.mark.slow
def test_configurable_headers_and_the_users_own_routes_behind_the_same_auth(database, tmp_path):
    """http.configurable_headers: the headers it names reach the run's config (never the
    credentials, whatever the patterns); http.enable_custom_route_auth: http.app's routes need the
    same authentication (401 as JSON, the user in `request.user`), and http.middleware_order says
    whether the app's own middleware runs before it (middleware_first: it marks the 401 too); they
    wrap the API's routes as well, as on the Platform."""
    from langgraph_sdk import get_client

    headers = {"include": ["x-tenant-*", "authorization", "x-api-key", "user-agent"],
               "exclude": ["x-tenant-secret"]}
    for order in ("auth_first", "middleware_first"):
        config = _config(tmp_path, configurable_headers=headers, enable_custom_route_auth=True,
                         middleware_order=order, logging_headers={"include": ["x-tenant-*", "authorization"]})
        with runtime_server(database, LANGGRAPH_CONFIG=config, API_KEYS="", LOG_LEVEL="INFO") as server:
            async def run() -> dict[str, Any]:
                client = get_client(url=server.base, api_key=None, headers={
                    "Authorization": "Bearer token-alice", "X-Tenant-Region": "eu",
                    "X-Tenant-Secret": "s3cret", "X-API-Key": "not-for-the-graph"})
                return await client.runs.wait(None, "whoami", input={"question": "?"})

            seen = asyncio.run(run())
            assert seen["who"] == "alice"
            assert set(seen["headers"]) == {"x-tenant-region", "user-agent"}, seen["headers"]
            assert seen["headers"]["x-tenant-region"] == "eu"

            import http.client

            def custom(token: str | None, path: str = "/custom/me",
                       method: str = "GET") -> tuple[int, Any, dict[str, str]]:
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                conn.request(method, path, body="{}" if method == "POST" else None,
                             headers={"Content-Type": "application/json",
                                      **({"Authorization": f"Bearer {token}"} if token else {})})
                answer = conn.getresponse()
                body = json.loads(answer.read())
                return answer.status, body, {k.lower(): v for k, v in answer.getheaders()}

            # the app's middleware wrap the API's routes as well (after its authentication under
            # auth_first: a refused request does not reach them), not agentgen's probes
            status, _, answer_headers = custom("token-bob", "/threads/search", "POST")
            assert status == 200 and answer_headers["x-webapp-middleware"] == "ran"
            status, _, answer_headers = custom(None, "/threads/search", "POST")
            assert status == 401
            assert ("x-webapp-middleware" in answer_headers) == (order == "middleware_first"), order
            assert "x-webapp-middleware" not in custom(None, "/health")[2]

            status, body, answer_headers = custom(None)
            assert status == 401 and body["message"] == "unknown or missing bearer token", body
            assert ("x-webapp-middleware" in answer_headers) == (order == "middleware_first"), order
            status, body, answer_headers = custom("token-bob")
            assert (status, body, answer_headers["x-webapp-middleware"]) == (200, {"identity": "bob"}, "ran")
            # the app's WebSocket routes are behind the same authentication
            assert asyncio.run(_custom_socket(server.base, None)) == 401
            assert asyncio.run(_custom_socket(server.base, "token-bob")) == {"identity": "bob"}
            # http.logging_headers: the access log shows the headers it names, never credentials
            logged = [json.loads(line) for line in output(server.proc).splitlines()
                      if line.startswith("{") and '"logger": "access"' in line]
            runs = [entry for entry in logged if entry.get("path") == "/runs/wait"]
            assert runs and runs[0]["headers"] == {"x-tenant-region": "eu", "x-tenant-secret": "s3cret"}


async def _custom_socket(base: str, token: str | None) -> Any:
    """What http.app's WebSocket route sends, or the handshake's refusal status."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with connect(base.replace("http://", "ws://") + "/custom/socket",
                           additional_headers=headers) as connection:
            return json.loads(await connection.recv())
    except InvalidStatus as refused:
        return refused.response.status_code


@pytest.mark.slow
def test_keys_and_handlers_together_need_both_and_limits_count_per_user(database):
    """With API keys configured as well, a request needs a key and the handler's approval; rate
    limits count per authenticated user (one user's burst does not limit another on the same key)."""
    with runtime_server(database, LANGGRAPH_CONFIG=str(AUTH_CONFIG), RATE_LIMIT_PER_MINUTE="3") as server:
        def status(key: str | None, token: str | None) -> int:
            import http.client

            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            headers = {"content-type": "application/json"}
            if key:
                headers["X-API-Key"] = key
            if token:
                headers["Authorization"] = f"Bearer {token}"
            conn.request("POST", "/threads/search", body="{}", headers=headers)
            return conn.getresponse().status

        assert status(None, "token-alice") == 401  # no key
        assert status("key-one", None) == 401  # no user
        assert [status("key-one", "token-alice") for _ in range(4)] == [200, 200, 200, 429]
        assert status("key-one", "token-bob") == 200


def test_a_broken_handler_module_refuses_the_start_up(tmp_path):
    """A handler file that fails at import, one without an authenticate handler, and a path to
    nothing: the server does not start, and says why in one line naming the file."""
    cases = {
        "raises.py": "raise RuntimeError('no secret configured')\n",
        "no_authenticate.py": "from langgraph_sdk import Auth\nauth = Auth()\n",
        "not_auth.py": "auth = object()\n",
    }
    config = json.loads(AUTH_CONFIG.read_text())
    config["graphs"] = {"weather": str(WEATHER / "src" / "weather_agent" / "graph.py") + ":graph"}
    config.pop("http")
    config["dependencies"] = [str(WEATHER)]
    for name, source in {**cases, "missing.py": None}.items():
        if source is not None:
            (tmp_path / name).write_text(source)
        config["auth"] = {"path": f"./{name}:auth"}
        path = tmp_path / f"langgraph.{name}.json"
        path.write_text(json.dumps(config))
        env = runtime_env("postgresql://127.0.0.1:1/none", PORT=str(free_port()), API_KEYS="",
                          LANGGRAPH_CONFIG=str(path))
        done = subprocess.run([sys.executable, "-m", "agentgen_runtime"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode != 0, name
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert "Traceback" not in done.stderr and len(lines) == 1, (name, done.stderr)
        assert "auth.path" in lines[0] and name in lines[0], (name, lines[0])
        doctor = subprocess.run([sys.executable, "-m", "agentgen_runtime", "doctor"], cwd=tmp_path,
                                env=env, capture_output=True, text=True, timeout=120)
        problems = doctor.stderr.splitlines()
        assert doctor.returncode == 1 and any(
            p.startswith("problem: langgraph.json auth.path") and name in p for p in problems), problems
        assert not any("api_keys" in p for p in problems), problems  # the handlers authenticate


@pytest.mark.slow
def test_a_request_is_authenticated_and_counted_once_under_auth_first(database, tmp_path):
    """http.middleware_order auth_first: the API's requests are authenticated before http.app's
    middleware, and not again by their route: the rate limit counts each request once."""
    import http.client

    config = _config(tmp_path, middleware_order="auth_first")
    with runtime_server(database, LANGGRAPH_CONFIG=config, API_KEYS="",
                        RATE_LIMIT_PER_MINUTE="3") as server:
        def search() -> tuple[int, str | None]:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.request("POST", "/threads/search", body="{}", headers={
                "Content-Type": "application/json", "Authorization": "Bearer token-alice"})
            answer = conn.getresponse()
            answer.read()
            return answer.status, answer.getheader("x-webapp-middleware")

        assert [search() for _ in range(4)] == [(200, "ran")] * 3 + [(429, None)]
