"""The kit's app for the operations listener (``OPS_PORT``: ``/livez``, ``/readyz``, ``/metrics``).

Its lifespan is controlled from the test through the environment, so the test waits on
facts rather than sleeping:

* ``KIT_BOOT_GATE=<path>``: lifespan startup completes only once that file exists (the test
  creates it), so ``/readyz`` can be seen 503 before any worker has booted; each worker first
  creates ``<path>.<pid>.waiting``, so the test knows it is waiting there;
* ``KIT_SHUTDOWN_SECONDS=N``: lifespan shutdown takes N seconds, so a master that is stopping
  (after giving up, say) stays observable for that long.

``/pid`` names the worker process; ``/count`` increments the app's own ``prometheus_client``
Counter ``kit_app_hits_total`` (summed across workers by the master's ``/metrics``) and names
the worker; ``/exit`` ends the worker at once with ``os._exit(1)`` (a crash, no lifespan
shutdown); any other path says hello. Without ``prometheus_client`` installed the app still
serves, and ``/count`` answers 501.
"""

import asyncio
import json
import os
from typing import Any

try:
    from prometheus_client import Counter
except ImportError:  # the kit's metrics checks skip; the rest still runs
    HITS = None
else:
    HITS = Counter("kit_app_hits", "Requests to the ops kit app's /count.")


async def lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        kind = message["type"].split(".")[-1]
        if kind == "startup":
            gate = os.environ.get("KIT_BOOT_GATE")
            if gate:  # this worker has imported the app and waits: the test can see it
                open(f"{gate}.{os.getpid()}.waiting", "w").close()
            while gate and not os.path.exists(gate):
                await asyncio.sleep(0.02)
        elif kind == "shutdown":
            await asyncio.sleep(float(os.environ.get("KIT_SHUTDOWN_SECONDS") or 0))
        await send({"type": f"lifespan.{kind}.complete"})
        if kind == "shutdown":
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path, status = scope["path"], 200
    if path == "/exit":
        os._exit(1)
    if path == "/pid":
        body = str(os.getpid()).encode()
    elif path == "/count":
        if HITS is None:
            status, body = 501, b"prometheus_client is not installed"
        else:
            HITS.inc()
            body = str(os.getpid()).encode()
    else:
        body = json.dumps({"message": "Hello from ops"}).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
