"""The agent's own HTTP routes (langgraph.json http.app), served beside the API."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def hello(request):
    return JSONResponse({"hello": os.environ.get("WEATHER_GREETING", "")})


app = Starlette(routes=[Route("/custom/hello", hello)])
