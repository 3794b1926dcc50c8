"""FastAPI with one route and no middleware: what the framework alone costs for /healthz/live."""

from fastapi import FastAPI
from fastapi.responses import Response

BODY = b'{"status":"ok"}'

app = FastAPI()


@app.get("/healthz/live")
async def live() -> Response:
    return Response(BODY, media_type="application/json")
