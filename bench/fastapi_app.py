"""The FastAPI endpoint `bench/run.py --tracing` measures: a small JSON model (and /plaintext,
which the harness polls to know the server is up)."""

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel


class Item(BaseModel):
    id: int
    name: str
    price: float
    tags: list[str]


# FastAPI's own telemetry (its server and operation spans, once a tracer provider is set) off:
# each request then records exactly one span, the launcher's, and the bench reads its cost.
app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})


@app.get("/plaintext", response_class=PlainTextResponse)
async def plaintext() -> str:
    return "Hello, World!"


@app.get("/items/{item_id}")
async def item(item_id: int) -> Item:
    return Item(id=item_id, name="widget", price=9.5, tags=["a", "b"])
