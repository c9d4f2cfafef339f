"""The bundled demo app: what the image serves until you COPY your own app to /app.

Starlette 1.x style (routes passed to the constructor; ``@app.route`` no longer exists).
"""

import asyncio
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


async def homepage(request: Request) -> JSONResponse:
    return JSONResponse({"message": "Hello World!"})


async def plaintext(request: Request) -> PlainTextResponse:
    return PlainTextResponse("Hello, World!")


async def json_hello(request: Request) -> JSONResponse:
    return JSONResponse({"message": "Hello, World!"})


async def info(request: Request) -> JSONResponse:
    """Who answered: lets tests and users see workers, proxies and prestart at work."""
    return JSONResponse(
        {
            "pid": os.getpid(),
            "client": request.client.host if request.client else None,
            "scheme": request.url.scheme,
            "env": {k: v for k, v in os.environ.items() if k.startswith("DEMO_")},
        }
    )


async def slow(request: Request) -> PlainTextResponse:
    seconds = float(request.query_params.get("seconds", "2"))
    await asyncio.sleep(min(seconds, 60))
    return PlainTextResponse(f"slept {seconds}")


app = Starlette(
    routes=[
        Route("/", homepage),
        Route("/plaintext", plaintext),
        Route("/json", json_hello),
        Route("/info", info),
        Route("/slow", slow),
    ]
)
