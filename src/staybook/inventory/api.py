"""HTTP routes of the inventory context: calendars, availability, iCal channel sync."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import Response

from staybook.catalog import facts as catalog
from staybook.inventory import ical, service
from staybook.inventory.pricing import nightly_prices
from staybook.inventory.schemas import (
    MAX_CALENDAR_RANGE_DAYS,
    Availability,
    Calendar,
    CalendarFeedOut,
    CalendarUpdate,
    IcalImportResult,
)
from staybook.kernel.dates import bookable_window, check_range, stay_fields_in
from staybook.kernel.errors import Forbidden, InvalidInput, Unauthorized
from staybook.kernel.runtime import Runtime, get_runtime
from staybook.kernel.security import Principal, optional_principal, require_role

router = APIRouter(tags=["inventory"])

Host = Annotated[Principal, Depends(require_role("host", "admin"))]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


@router.put("/room-types/{room_type_id}/calendar", response_model=Calendar)
async def update_calendar(room_type_id: uuid.UUID, body: CalendarUpdate, principal: Host, runtime: RuntimeDep):
    """Bulk change over [from, to) in one UPDATE; 409 naming the nights if units drop below held + booked."""
    async with runtime.db.unit_of_work() as uow:
        summary = await catalog.authorize_room_type(uow.session, principal, room_type_id)
        if body.price is not None and body.price.currency != summary.currency:
            raise InvalidInput(f"Prices of this property are in {summary.currency}", field="body.price.currency")
        prices = None
        if body.rules:
            base = body.price.amount if body.price is not None else summary.base_price_amount
            prices = nightly_prices(base, body.from_, body.to, [rule.rule() for rule in body.rules])
        changed = await service.update_calendar(
            uow,
            room_type_id,
            body.from_,
            body.to,
            price_amount=body.price.amount if body.price is not None else None,
            prices=prices,
            units=body.units,
            closed=body.closed,
            min_stay=body.min_stay,
            closed_to_arrival=body.closed_to_arrival,
        )
        if not changed:
            raise InvalidInput(f"No nights on sale between {body.from_} and {body.to}", field="body.from")
    await service.invalidate_availability(runtime, summary.property_id)
    return Calendar(room_type_id=room_type_id, currency=summary.currency, nights=changed)


@router.get("/room-types/{room_type_id}/calendar", response_model=Calendar)
async def get_calendar(
    room_type_id: uuid.UUID,
    principal: Host,
    runtime: RuntimeDep,
    from_: Annotated[date, Query(alias="from")],
    to: date,
):
    check_range(from_, to, longest=MAX_CALENDAR_RANGE_DAYS)
    async with runtime.db.session() as session:
        summary = await catalog.authorize_room_type(session, principal, room_type_id)
        nights = await service.nights(session, room_type_id, from_, to)
    return Calendar(room_type_id=room_type_id, currency=summary.currency, nights=nights)


@router.get("/properties/{property_id}/availability", responses={200: {"model": Availability}})
async def availability(
    property_id: uuid.UUID,
    runtime: RuntimeDep,
    check_in: date,
    check_out: date,
    guests: Annotated[int, Query(ge=1, le=100)] = 1,
):
    """Per room type: available units, nightly prices, total, bookable and the reasons when not."""
    with stay_fields_in("query"):
        body = await service.property_availability(runtime, property_id, check_in, check_out, guests)
    # The cached JSON bytes are the body: no decoding, no re-encoding, no FastAPI encoder (the hot path).
    return Response(body, media_type="application/json")


@router.get(
    "/room-types/{room_type_id}/calendar.ics",
    response_class=Response,
    responses={200: {"description": "An iCalendar feed (RFC 5545)", "content": {"text/calendar": {}}}},
)
async def export_ical(
    room_type_id: uuid.UUID,
    runtime: RuntimeDep,
    principal: Annotated[Principal | None, Depends(optional_principal)],
    token: Annotated[str | None, Query(max_length=200, description="The feed token of the signed URL")] = None,
) -> Response:
    """Booked-out and closed nights as all-day events, for channel managers (Airbnb, Booking.com).

    Channel managers fetch a plain URL: with `?token=` from GET /room-types/{id}/calendar-feed no
    bearer token is needed (a wrong or rotated token is 404); without it, the owning host or an admin.
    """
    async with runtime.db.session() as session:
        if token is not None:
            await service.check_feed_token(session, runtime.settings, room_type_id, token)
            summary = await catalog.room_type_summary(session, room_type_id)
        else:
            summary = await catalog.authorize_room_type(session, _host(principal), room_type_id)
        nights = await service.nights(session, room_type_id, summary.today(), date.max)
    body = ical.export_calendar(room_type_id, summary.room_type_name, nights)
    return Response(
        body,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{room_type_id}.ics"', "Cache-Control": "no-store"},
    )


def _host(principal: Principal | None) -> Principal:
    if principal is None:
        raise Unauthorized("This route needs a bearer access token or a calendar feed token")
    if principal.role not in ("host", "admin"):
        raise Forbidden("This action needs one of the roles: host, admin")
    return principal


def _feed_out(request: Request, runtime: Runtime, room_type_id: uuid.UUID, version: int) -> CalendarFeedOut:
    token = service.feed_token(runtime.settings, room_type_id, version)
    url = request.url_for("export_ical", room_type_id=str(room_type_id)).include_query_params(token=token)
    return CalendarFeedOut(room_type_id=room_type_id, url=str(url), version=version)


@router.get("/room-types/{room_type_id}/calendar-feed", response_model=CalendarFeedOut)
async def calendar_feed(room_type_id: uuid.UUID, request: Request, principal: Host, runtime: RuntimeDep):
    """The signed export URL of the room type's calendar (host or admin only)."""
    async with runtime.db.session() as session:
        await catalog.authorize_room_type(session, principal, room_type_id)
        version = await service.feed_version(session, room_type_id)
    return _feed_out(request, runtime, room_type_id, version)


@router.post("/room-types/{room_type_id}/calendar-feed/rotate", response_model=CalendarFeedOut)
async def rotate_calendar_feed(room_type_id: uuid.UUID, request: Request, principal: Host, runtime: RuntimeDep):
    """A new signed export URL; every URL handed out before stops working at once."""
    async with runtime.db.unit_of_work() as uow:
        await catalog.authorize_room_type(uow.session, principal, room_type_id)
        version = await service.rotate_feed(uow, room_type_id)
    return _feed_out(request, runtime, room_type_id, version)


@router.post("/room-types/{room_type_id}/calendar/import", response_model=IcalImportResult)
async def import_ical(
    room_type_id: uuid.UUID,
    principal: Host,
    runtime: RuntimeDep,
    file: Annotated[UploadFile, File(description="An iCalendar (.ics) file; its events' nights are closed")],
):
    """Closes the nights the file's events cover, within the bookable window (the calendar has no
    other nights to close)."""
    window = bookable_window(runtime.settings.inventory.horizon_days)
    blocked = ical.blocked_nights(await file.read(ical.MAX_ICAL_BYTES + 1), window=window)
    async with runtime.db.unit_of_work() as uow:
        summary = await catalog.authorize_room_type(uow.session, principal, room_type_id)
        closed = await service.close_nights(uow, room_type_id, blocked.nights)
    await service.invalidate_availability(runtime, summary.property_id)
    return IcalImportResult(
        room_type_id=room_type_id,
        events=blocked.events,
        closed_nights=closed,
        skipped_nights=len(blocked.nights) - closed,
    )
