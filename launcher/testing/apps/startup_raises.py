"""An app whose lifespan startup raises, reported the way frameworks report it.

Starlette, FastAPI and Quart catch the exception, send ``lifespan.startup.failed`` with the
traceback, and re-raise. (A bare exception without that message means "lifespan unsupported"
in the ASGI spec, and servers rightly go on serving, so it is not what this app models.)
"""

import traceback
from typing import Any


async def connect_to_database() -> None:
    raise ConnectionError("cannot reach the database")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "lifespan":
        raise RuntimeError("this app never serves: its start-up fails")
    await receive()  # lifespan.startup
    try:
        await connect_to_database()
    except BaseException:
        await send({"type": "lifespan.startup.failed", "message": traceback.format_exc()})
        raise
