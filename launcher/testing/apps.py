"""Small plain-ASGI apps (no framework needed) that the conformance kit serves.

Each is source text that a test writes into a temporary APP_DIR, so plugin authors need no
files of ours on disk.
"""

from __future__ import annotations

from pathlib import Path

HELLO = """
import asyncio, json, os

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].split(".")[-1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    path, query = scope["path"], scope.get("query_string", b"").decode()
    if path == "/slow":
        await asyncio.sleep(float(query.partition("seconds=")[2] or 1))
        body = b"slow done"
    elif path == "/pid":
        body = str(os.getpid()).encode()
    elif path == "/headers":
        client = scope.get("client") or ["", 0]
        body = json.dumps({"client": client[0], "scheme": scope["scheme"]}).encode()
    else:
        body = json.dumps({"message": "Hello World!"}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
"""

RAISES_ON_IMPORT = """
raise RuntimeError("the app failed while being imported")
"""

STARTUP_FAILS = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "cannot reach the database"})
"""


def write(app_dir: Path, relative: str, source: str) -> Path:
    """Write ``source`` as ``app_dir/relative``, creating packages' ``__init__.py`` on the way."""
    path = app_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in path.relative_to(app_dir).parents:
        if parent != Path("."):
            (app_dir / parent / "__init__.py").touch()
    path.write_text(source)
    return path
