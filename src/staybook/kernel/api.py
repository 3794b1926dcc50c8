"""Operational routes: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import hmac

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from staybook.kernel.errors import NotFound, Unauthorized, problem_response
from staybook.kernel.metrics import exposition

router = APIRouter(tags=["operations"])


@router.get("/healthz/live", summary="The process is up")
async def live() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get("/healthz/ready", summary="The process can serve: database, and Redis/NATS when configured")
async def ready(request: Request) -> Response:
    checks = await request.app.state.runtime.readiness()
    if all(result == "ok" for result in checks.values()):
        return Response(orjson.dumps({"status": "ok", "checks": checks}), media_type="application/json")
    return problem_response(
        503, "not-ready", "Service not ready", "A dependency is unavailable.", instance="/healthz/ready", checks=checks
    )


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    """Behind `Authorization: Bearer <metrics.token>`; without a token set, open outside production only."""
    settings = request.app.state.settings
    token = settings.metrics.token
    if token is None:
        if settings.environment == "production":
            raise NotFound("Metrics are served with STAYBOOK_METRICS__TOKEN set, to scrapers that send it")
    else:
        sent = request.headers.get("authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token.get_secret_value()}".encode()):
            raise Unauthorized("Metrics need the scraper's bearer token")
    body, content_type = exposition()
    return Response(body, media_type=content_type)
