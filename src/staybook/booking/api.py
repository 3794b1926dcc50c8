"""HTTP routes of the booking context: hold, pay, cancel, and the guest's and host's lists."""

from __future__ import annotations

import uuid
from datetime import date

import orjson
from fastapi import APIRouter, Body, Depends, Query, Request
from starlette.responses import Response

from staybook.booking import service
from staybook.booking.bootstrap import BookingDep
from staybook.booking.schemas import BookingOut, CancelRequest, HoldRequest, PaymentOutcome, PaymentRequest
from staybook.kernel.dates import stay_fields_in
from staybook.kernel.idempotency import run_idempotent
from staybook.kernel.openapi import created, idempotency_key
from staybook.kernel.runtime import Runtime, get_runtime
from staybook.kernel.schemas import Page
from staybook.kernel.security import Principal, current_principal, require_role

router = APIRouter(tags=["booking"])


def _ttl(runtime: Runtime) -> int:
    return runtime.settings.booking.idempotency_ttl_seconds


@router.post(
    "/bookings",
    status_code=201,
    response_model=BookingOut,
    summary="Hold a room type for a stay (Idempotency-Key required)",
    responses={
        **created("booking"),
        409: {"description": "Some nights are not available; the problem names them"},
    },
    openapi_extra=idempotency_key(required=True),
)
async def hold(
    request: Request,
    payload: HoldRequest,
    principal: Principal = Depends(require_role("guest", "admin")),
    runtime: Runtime = Depends(get_runtime),
) -> Response:
    async def work(claim):
        with stay_fields_in("body"):
            return 201, await service.place_hold(runtime, principal, payload, claim)

    response = await run_idempotent(
        request, runtime.db, _ttl(runtime), scope=principal.user_id, body=payload.model_dump(mode="json"), work=work
    )
    if response.status_code == 201:  # also on a replay: the first answer, with its Location
        booking_id = orjson.loads(response.body)["id"]
        response.headers["Location"] = f"{request.scope.get('root_path', '')}{request.url.path}/{booking_id}"
    return response


@router.get("/bookings/{booking_id}", response_model=BookingOut, summary="One booking (guest, host or admin)")
async def get_booking(
    booking_id: uuid.UUID,
    principal: Principal = Depends(current_principal),
    runtime: Runtime = Depends(get_runtime),
) -> dict:
    return await service.get_booking(runtime, principal, booking_id)


@router.post(
    "/bookings/{booking_id}/payment",
    response_model=PaymentOutcome,
    summary="Pay a held booking with a provider token (Idempotency-Key required)",
    responses={
        202: {"model": PaymentOutcome, "description": "The provider has not answered yet; the booking stays held"},
        402: {"description": "Declined"},
    },
    openapi_extra=idempotency_key(required=True),
)
async def pay(
    booking_id: uuid.UUID,
    request: Request,
    payload: PaymentRequest,
    deps: BookingDep,
    principal: Principal = Depends(current_principal),
    runtime: Runtime = Depends(get_runtime),
) -> Response:
    async def work(claim):
        return await service.pay(runtime, deps, principal, booking_id, payload.payment_method, claim)

    return await run_idempotent(
        request, runtime.db, _ttl(runtime), scope=principal.user_id, body=payload.model_dump(mode="json"), work=work
    )


@router.post(
    "/bookings/{booking_id}/cancel",
    response_model=BookingOut,
    summary="Cancel a confirmed booking",
    openapi_extra=idempotency_key(required=False),
)
async def cancel(
    booking_id: uuid.UUID,
    request: Request,
    deps: BookingDep,
    payload: CancelRequest = Body(default_factory=CancelRequest),
    principal: Principal = Depends(current_principal),
    runtime: Runtime = Depends(get_runtime),
) -> Response:
    async def work(claim):
        return 200, await service.cancel(runtime, deps, principal, booking_id, payload.reason, claim)

    return await run_idempotent(
        request,
        runtime.db,
        _ttl(runtime),
        scope=principal.user_id,
        body=payload.model_dump(mode="json"),
        work=work,
        required=False,
    )


@router.get("/me/bookings", response_model=Page[BookingOut], summary="The caller's bookings, newest first")
async def my_bookings(
    cursor: uuid.UUID | None = None,
    limit: int = Query(20, ge=1, le=100),
    principal: Principal = Depends(current_principal),
    runtime: Runtime = Depends(get_runtime),
) -> dict:
    return await service.list_for_guest(runtime, principal, cursor=cursor, limit=limit)


@router.get("/hosts/me/bookings", response_model=Page[BookingOut], summary="Bookings of the host's properties")
async def host_bookings(
    property_id: uuid.UUID | None = None,
    start: date | None = Query(None, alias="from"),
    end: date | None = Query(None, alias="to"),
    cursor: uuid.UUID | None = None,
    limit: int = Query(20, ge=1, le=100),
    principal: Principal = Depends(require_role("host", "admin")),
    runtime: Runtime = Depends(get_runtime),
) -> dict:
    return await service.list_for_host(
        runtime, principal, property_id=property_id, start=start, end=end, cursor=cursor, limit=limit
    )
