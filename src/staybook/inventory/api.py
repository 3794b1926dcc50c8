"""HTTP routes of the inventory context: calendars, availability, iCal channel sync."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, File, Query, UploadFile
from fastapi.responses import Response

from staybook.catalog import service as catalog
from staybook.inventory import ical, service
from staybook.inventory.pricing import nightly_prices
from staybook.inventory.schemas import Calendar, CalendarUpdate, IcalImportResult
from staybook.kernel.errors import InvalidInput
from staybook.kernel.runtime import Runtime, get_runtime
from staybook.kernel.security import Principal, require_role

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
    if to <= from_:
        raise InvalidInput("'to' must be after 'from'", field="query.to")
    async with runtime.db.session() as session:
        summary = await catalog.authorize_room_type(session, principal, room_type_id)
        nights = await service.nights(session, room_type_id, from_, to)
    return Calendar(room_type_id=room_type_id, currency=summary.currency, nights=nights)


@router.get("/properties/{property_id}/availability")
async def availability(
    property_id: uuid.UUID,
    runtime: RuntimeDep,
    check_in: date,
    check_out: date,
    guests: Annotated[int, Query(ge=1, le=100)] = 1,
):
    """Per room type: available units, nightly prices, total, bookable and the reasons when not."""
    answer = await service.property_availability(runtime, property_id, check_in, check_out, guests)
    # Plain JSON data from the cache: orjson directly, skipping FastAPI's generic encoder (the hot path).
    return Response(orjson.dumps(answer), media_type="application/json")


@router.get("/room-types/{room_type_id}/calendar.ics")
async def export_ical(room_type_id: uuid.UUID, principal: Host, runtime: RuntimeDep) -> Response:
    """Booked-out and closed nights as all-day events, for channel managers (Airbnb, Booking.com)."""
    async with runtime.db.session() as session:
        summary = await catalog.authorize_room_type(session, principal, room_type_id)
        nights = await service.nights(session, room_type_id, summary.today(), date.max)
    body = ical.export_calendar(room_type_id, summary.room_type_name, nights)
    return Response(
        body,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{room_type_id}.ics"', "Cache-Control": "no-store"},
    )


@router.post("/room-types/{room_type_id}/calendar/import", response_model=IcalImportResult)
async def import_ical(
    room_type_id: uuid.UUID,
    principal: Host,
    runtime: RuntimeDep,
    file: Annotated[UploadFile, File(description="An iCalendar (.ics) file; its events' nights are closed")],
):
    blocked = ical.blocked_nights(await file.read())
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
