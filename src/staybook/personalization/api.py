"""HTTP routes of the personalization context: signals in, sessions, profiles, recommendations."""

from __future__ import annotations

import uuid
from datetime import date

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from staybook.kernel.runtime import Runtime, context_dependency, get_runtime
from staybook.kernel.security import Principal, current_principal, optional_principal
from staybook.personalization import service
from staybook.personalization.recommend import RecommendationRequest, recommend
from staybook.personalization.schemas import ProfileOut, RecommendationsOut, Require, SessionOut, SignalsAccepted
from staybook.personalization.service import Personalization

router = APIRouter(tags=["personalization"])


def _json(document, status_code: int = 200) -> Response:
    return Response(orjson.dumps(document), status_code=status_code, media_type="application/json")


@router.post(
    "/signals",
    status_code=202,
    response_model=SignalsAccepted,
    summary="Send a batch of behaviour signals (search, view, click, wishlist, share, dwell)",
    description="The request shape is in docs/personalization.md. Accepted signals are durable before the 202; "
    "invalid ones are listed by index and the rest are kept.",
    responses={
        403: {"description": "Forged session id (problem+json)"},
        413: {"description": "More than 500 signals, or a body too large (problem+json)"},
        415: {"description": "Unsupported content type or encoding (problem+json)"},
        422: {"description": "No valid signal, or a malformed batch (problem+json)"},
    },
)
async def post_signals(
    request: Request,
    principal: Principal | None = Depends(optional_principal),
    runtime: Runtime = Depends(get_runtime),
    deps: Personalization = Depends(context_dependency("personalization")),
) -> Response:
    headers = request.headers
    accepted = await service.accept_signals(
        deps,
        await request.body(),
        content_type=headers.get("content-type"),
        content_encoding=headers.get("content-encoding"),
        principal=principal,
        do_not_track=headers.get("dnt") == "1" or headers.get("sec-gpc") == "1",
    )
    return _json(accepted.model_dump(mode="json"), 202)


@router.post(
    "/signals/session",
    status_code=201,
    response_model=SessionOut,
    summary="A signed session id for anonymous signals",
)
async def new_session(
    principal: Principal | None = Depends(optional_principal), runtime: Runtime = Depends(get_runtime)
) -> Response:
    user_id = principal.user_id if principal is not None else None
    return _json({"session": service.session_id_for(runtime.settings, user_id)}, 201)


@router.get(
    "/personalization/profile",
    summary="The signed-in user's live profile (what recommendations use)",
    responses={200: {"model": ProfileOut}},
)
async def my_profile(
    principal: Principal = Depends(current_principal),
    deps: Personalization = Depends(context_dependency("personalization")),
) -> Response:
    profile = await service.profile_of(deps, f"u:{principal.user_id.hex}")
    return _json(profile.as_document())


@router.get(
    "/recommendations",
    response_model=RecommendationsOut,
    summary="Recommended stays: personal, similar to a property, or near a place",
    responses={404: {"description": "Unknown property (problem+json)"}, 422: {"description": "Invalid input"}},
)
async def recommendations(
    property_id: uuid.UUID | None = Query(None, description="Stays similar to this one"),
    lat: float | None = Query(None, ge=-90, le=90),
    lon: float | None = Query(None, ge=-180, le=180),
    city: str | None = Query(None, min_length=1, max_length=100),
    require: Require | None = Query(None, description="nearest, best rated or cheapest first"),
    check_in: date | None = Query(None),
    check_out: date | None = Query(None),
    guests: int = Query(2, ge=1, le=30),
    limit: int = Query(10, ge=1, le=50),
    principal: Principal | None = Depends(optional_principal),
    runtime: Runtime = Depends(get_runtime),
    deps: Personalization = Depends(context_dependency("personalization")),
) -> Response:
    request = RecommendationRequest(property_id, lat, lon, city, require, check_in, check_out, guests, limit)
    answer = await recommend(runtime, deps, principal, request)
    return _json(answer.model_dump(mode="json"))
