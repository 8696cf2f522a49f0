"""langgraph.json `http` options as the Platform reads them, served by a real runtime process:
`mount_prefix` (the API under a path; health at the root), `disable_*` (those routes gone, the
rest served), `cors` (replacing CORS_ORIGINS), `disable_webhooks` (a webhook is refused, not
dropped). Bad values refuse the start-up (test_hostile_api)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from langgraph_sdk import get_client

from .helpers import WEATHER, runtime_server

pytestmark = pytest.mark.slow
QUESTION = {"question": "rain?"}


def _config(tmp_path, **http) -> str:
    config = json.loads((WEATHER / "langgraph.json").read_text())
    # graph paths stay relative to the agent's directory
    config["graphs"] = {k: v.replace("./", f"{WEATHER}/", 1) if v.startswith("./") else v
                        for k, v in config["graphs"].items()}
    config["dependencies"] = [str(WEATHER)]
    config["http"] = http
    path = tmp_path / "langgraph.json"
    path.write_text(json.dumps(config))
    return str(path)


def test_a_mount_prefix_switches_and_cors(database, tmp_path):
    config = _config(tmp_path, mount_prefix="/api/v1", disable_store=True, disable_meta=True,
                     disable_webhooks=True, cors={"allow_origins": ["https://app.example.com"],
                                                  "allow_credentials": True, "max_age": 60})
    with runtime_server(database, LANGGRAPH_CONFIG=config, CORS_ORIGINS='["https://other.example"]',
                        WEBHOOK_SECRET="whsec_" + "QUJD" * 8) as server:
        async def sdk():
            c = get_client(url=f"{server.base}/api/v1", api_key="key-one")
            thread = await c.threads.create()
            return await c.runs.wait(thread["thread_id"], "weather", input=QUESTION)

        assert asyncio.run(sdk())["answers"]
        assert server.call("POST", "/threads", {})[0] == 404  # only under the prefix
        for path in ("/health", "/ready", "/ok"):
            assert server.call("GET", path)[0] == 200, path
        assert server.call("PUT", "/api/v1/store/items",
                           {"namespace": ["a"], "key": "k", "value": {}})[0] == 404
        assert server.call("GET", "/api/v1/info")[0] == 404
        status, answer, _ = server.call("POST", "/api/v1/runs/wait", {
            "assistant_id": "weather", "input": QUESTION, "webhook": "https://example.com/x"})
        assert status == 422 and "http.disable_webhooks" in answer["message"], answer

        import http.client

        def preflight(origin: str) -> dict[str, str]:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.request("OPTIONS", "/api/v1/threads", headers={
                "Origin": origin, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key,content-type"})
            response = conn.getresponse()
            response.read()
            conn.close()
            return {k.lower(): v for k, v in response.getheaders()}

        allowed = preflight("https://app.example.com")
        assert allowed["access-control-allow-origin"] == "https://app.example.com"
        assert allowed["access-control-allow-credentials"] == "true"
        assert allowed["access-control-max-age"] == "60"
        # http.cors replaces CORS_ORIGINS
        assert "access-control-allow-origin" not in preflight("https://other.example")


def test_disabled_runs_take_their_crons_and_keep_the_rest(database, tmp_path):
    config = _config(tmp_path, disable_runs=True, disable_assistants=True)
    with runtime_server(database, LANGGRAPH_CONFIG=config) as server:
        status, thread, _ = server.call("POST", "/threads", {})
        assert status == 200
        for method, path, body in (
                ("POST", "/runs/wait", {"assistant_id": "weather", "input": QUESTION}),
                ("POST", f"/threads/{thread['thread_id']}/runs", {"assistant_id": "weather"}),
                ("POST", "/runs/crons", {"assistant_id": "weather", "schedule": "0 0 * * *"}),
                ("POST", "/assistants/search", {})):
            assert server.call(method, path, body)[0] in (404, 405), path
        status, info, _ = server.call("GET", "/info")
        assert status == 200 and info["flags"]["crons"] is False and info["flags"]["assistants"] is False
        assert server.call("GET", f"/threads/{thread['thread_id']}/state")[0] == 200


SHADOWING_APP = '''
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def mine(request):
    return JSONResponse({"served_by": "app", "path": request.url.path})


app = Starlette(routes=[Route(path, mine) for path in (
    "/info", "/health", "/ok", "/docs", "/threads/search", "/threads/{thread_id}/summary")])
'''


def test_the_apps_routes_come_before_the_apis(database, tmp_path):
    """http.app's routes are matched before the API's, as on the Platform (the app may take an API
    path over: here GET /info), except agentgen's probes and the API's documentation; a path the
    app matches only for another method (GET /threads/search, where the API takes POST) stays the
    API's."""
    (tmp_path / "shadowing_app.py").write_text(SHADOWING_APP)
    config = json.loads(Path(_config(tmp_path)).read_text())
    config["http"] = {"app": f"{tmp_path}/shadowing_app.py:app"}
    (tmp_path / "langgraph.json").write_text(json.dumps(config))
    with runtime_server(database, LANGGRAPH_CONFIG=str(tmp_path / "langgraph.json")) as server:
        assert server.call("GET", "/info")[1] == {"served_by": "app", "path": "/info"}
        assert server.call("GET", "/threads/abc/summary")[1]["served_by"] == "app"
        assert server.call("GET", "/health")[1] == {"status": "ok"}
        assert server.call("GET", "/ok")[1] == {"ok": True}
        status, found, _ = server.call("POST", "/threads/search", {})
        assert status == 200 and isinstance(found, list), found
        assert server.call("GET", "/threads/search")[1]["served_by"] == "app"
