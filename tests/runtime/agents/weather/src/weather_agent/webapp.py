"""The agent's own HTTP routes (langgraph.json http.app), served beside the API, with a middleware
of its own (it marks every answer, so tests see whether it ran before the API's authentication)."""

from __future__ import annotations

import os
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

STARTED: list[str] = []


@asynccontextmanager
async def lifespan(app):
    """The app's own start-up (the server must run it, as the Platform does)."""
    STARTED.append("started")
    yield


async def hello(request):
    return JSONResponse({"hello": os.environ.get("WEATHER_GREETING", ""), "lifespan": STARTED})


async def me(request):
    """Who the API's authentication says called (http.enable_custom_route_auth), else null."""
    user = request.scope.get("user")
    return JSONResponse({"identity": getattr(user, "identity", None)})


async def socket_me(websocket):
    """The same over a WebSocket: who the handshake was authenticated as."""
    await websocket.accept()
    user = websocket.scope.get("user")
    await websocket.send_json({"identity": getattr(user, "identity", None)})
    await websocket.close()


class Mark:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def marked(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-webapp-middleware", b"ran")]}
            await send(message)

        await self.app(scope, receive, marked if scope["type"] == "http" else send)


app = Starlette(routes=[Route("/custom/hello", hello), Route("/custom/me", me),
                        WebSocketRoute("/custom/socket", socket_me)],
                middleware=[Middleware(Mark)], lifespan=lifespan)
