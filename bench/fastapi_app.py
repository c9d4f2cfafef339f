"""The FastAPI endpoint the layer costs are measured on (``bench/run.py --app fastapi``): a small
JSON model through FastAPI's validation and serialisation, at the demo's ``/plaintext`` path so
every load of the bench applies."""

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Greeting(BaseModel):
    message: str
    count: int


@app.get("/plaintext")
async def plaintext() -> Greeting:
    return Greeting(message="Hello, World!", count=1)
