"""Operational routes: liveness, readiness, Prometheus metrics; and the operators' own, under
/api/v1/admin (admins only): the dead letters of every durable consumer with replay, and health."""

from __future__ import annotations

import hmac
import uuid
from typing import Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from staybook.kernel.errors import NotFound, Unauthorized, problem_response
from staybook.kernel.metrics import exposition
from staybook.kernel.models import DeadLetter
from staybook.kernel.runtime import Runtime, get_runtime
from staybook.kernel.schemas import (
    CheckOut,
    ConsumerDeadLettersOut,
    DeadLetterOut,
    HealthOut,
    LiveOut,
    Page,
    ReadyOut,
    ReplayOut,
)
from staybook.kernel.security import require_role

router = APIRouter(tags=["operations"])
admin_router = APIRouter(tags=["operations"], prefix="/admin", dependencies=[Depends(require_role("admin"))])


@router.get("/healthz/live", summary="The process is up", responses={200: {"model": LiveOut}})
async def live() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get(
    "/healthz/ready",
    summary="The process can serve: database, and Redis/NATS when configured",
    responses={
        200: {"model": ReadyOut},
        503: {"description": "A dependency is down (problem+json `not-ready`, with `checks`)"},
    },
)
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


# --------------------------------------------------------------------------- /api/v1/admin


def dead_letter_out(dead: DeadLetter) -> DeadLetterOut:
    return DeadLetterOut(
        id=dead.id,
        consumer=dead.consumer,
        event_id=dead.event_id,
        subject=dead.subject,
        event_type=str(dead.envelope.get("type", "")),
        error=dead.error,
        attempts=dead.attempts,
        created_at=dead.created_at,
        replayed_at=dead.replayed_at,
        envelope=dead.envelope,
    )


@admin_router.get(
    "/consumers", response_model=list[ConsumerDeadLettersOut], summary="Durable consumers and their dead letters"
)
async def consumers(runtime: Runtime = Depends(get_runtime)) -> list[ConsumerDeadLettersOut]:
    return [ConsumerDeadLettersOut(**vars(c)) for c in await runtime.dead_letters.consumers()]


@admin_router.get("/dead-letters", response_model=Page[DeadLetterOut], summary="Dead letters, oldest first")
async def dead_letters(
    consumer: str | None = Query(None, max_length=120, description="Only this consumer's"),
    state: Literal["waiting", "replayed"] = "waiting",
    cursor: uuid.UUID | None = Query(None, description="next_cursor of the previous page"),
    limit: int = Query(50, ge=1, le=500),
    runtime: Runtime = Depends(get_runtime),
) -> Page[DeadLetterOut]:
    rows = await runtime.dead_letters.find(consumer=consumer, replayed=state == "replayed", after=cursor, limit=limit)
    return Page(items=[dead_letter_out(r) for r in rows], next_cursor=str(rows[-1].id) if len(rows) == limit else None)


@admin_router.get("/dead-letters/{dead_letter_id}", response_model=DeadLetterOut, summary="One dead letter")
async def dead_letter(dead_letter_id: uuid.UUID, runtime: Runtime = Depends(get_runtime)) -> DeadLetterOut:
    return dead_letter_out(await runtime.dead_letters.get(dead_letter_id))


@admin_router.post(
    "/dead-letters/{dead_letter_id}/replay",
    response_model=ReplayOut,
    summary="Run a dead letter through its consumer again",
    description="409 replay-failed when the consumer fails again (the letter keeps waiting, with the new error); "
    "409 when it was replayed already or its consumer no longer runs.",
)
async def replay_dead_letter(dead_letter_id: uuid.UUID, runtime: Runtime = Depends(get_runtime)) -> ReplayOut:
    outcome = await runtime.dead_letters.replay(dead_letter_id)
    return ReplayOut(dead_letter=dead_letter_out(outcome.dead_letter), handled=outcome.handled)


@admin_router.get(
    "/health", response_model=HealthOut, summary="Database, Redis, NATS and search, as this process sees them"
)
async def health(runtime: Runtime = Depends(get_runtime)) -> HealthOut:
    checks = [CheckOut(name=n, status=s, milliseconds=ms) for n, s, ms in await runtime.health()]
    return HealthOut(status="ok" if all(c.status == "ok" for c in checks) else "degraded", checks=checks)
