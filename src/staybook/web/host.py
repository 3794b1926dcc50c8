"""The host extranet: dashboard, listings (properties, room types, photos), the calendar grid,
bookings, and calendar sync. Catalog and booking are reached through their services; calendar
changes, feeds and imports through inventory's use cases as its routes expose them (one place
for the rules: currency check, pricing rules, the overcommit refusal, cache invalidation)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.responses import Response

from staybook.booking import service as booking
from staybook.catalog import facts as catalog_facts
from staybook.catalog import service as catalog
from staybook.catalog.bootstrap import CatalogDep
from staybook.catalog.schemas import (
    AMENITIES,
    CANCELLATION_POLICIES,
    PROPERTY_TYPES,
    PropertyCreate,
    PropertyUpdate,
    RoomTypeCreate,
    RoomTypeUpdate,
)
from staybook.inventory import api as inventory_api
from staybook.inventory.schemas import CalendarUpdate
from staybook.kernel.errors import Forbidden, InvalidInput, StaybookError, Unauthorized
from staybook.kernel.security import Principal
from staybook.web import i18n
from staybook.web import service as pages
from staybook.web.rendering import WebRoute, page_state, redirect, render
from staybook.web.schemas import CalendarForm, PropertyForm, RoomTypeForm, parse_form, to_minor_units

router = APIRouter(prefix="/host", include_in_schema=False, route_class=WebRoute)


def host(request: Request) -> Principal:
    _, session, _ = page_state(request)
    if session.principal is None:
        raise Unauthorized("Please sign in to continue.")
    if session.principal.role not in ("host", "admin"):
        raise Forbidden("The extranet is for hosts. Register as a host to list a property.")
    return session.principal


def _invalid(error: ValidationError) -> InvalidInput:
    return InvalidInput(
        "Some fields are not valid.",
        errors=[
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in error.errors(include_url=False, include_context=False)
        ],
    )


# --------------------------------------------------------------------------- dashboard


@router.get("")
async def dashboard(request: Request) -> Response:
    principal = host(request)
    runtime, _, _ = page_state(request)
    return render(request, "host/dashboard.html", **await pages.host_dashboard(runtime, principal))


# --------------------------------------------------------------------------- listings


@router.get("/properties")
async def properties(request: Request) -> Response:
    principal = host(request)
    runtime, _, _ = page_state(request)
    page = await catalog.host_properties(runtime, principal, cursor=None, limit=200)
    return render(request, "host/properties.html", properties=page.items)


def _property_context(values: dict | None = None, problem: StaybookError | None = None) -> dict:
    return {
        "values": values or {},
        "property_types": PROPERTY_TYPES,
        "amenity_choices": AMENITIES,
        "policies": CANCELLATION_POLICIES,
        "problem": problem.detail if problem else None,
        "errors": (problem.extensions.get("errors") or []) if problem else [],
    }


@router.get("/properties/new")
async def new_property(request: Request) -> Response:
    host(request)
    defaults = {"timezone": "Europe/Paris", "currency": "EUR", "country": "FR", "check_in_time": "15:00",
                "check_out_time": "11:00", "cancellation_policy": "moderate", "property_type": "hotel",
                "amenities": []}  # fmt: skip
    return render(request, "host/property_new.html", **_property_context(defaults))


@router.post("/properties/new")
async def create_property(request: Request) -> Response:
    principal = host(request)
    runtime, _, _ = page_state(request)
    raw = await request.form()
    values = {k: v for k, v in raw.items() if k != "csrf_token"} | {"amenities": raw.getlist("amenities")}
    try:
        form = parse_form(PropertyForm, raw, lists=("amenities",))
        data = _build(PropertyCreate, form.model_dump())
        created = await catalog.create_property(runtime, principal, data)
    except StaybookError as error:
        return render(request, "host/property_new.html", status=error.status, **_property_context(values, error))
    return redirect(f"/host/properties/{created.id}?created=1")


def _build(model, values: dict):
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise _invalid(error) from None


async def _own_property(request: Request, property_id: uuid.UUID):
    principal = host(request)
    runtime, _, _ = page_state(request)
    prop = await catalog.get_property(runtime, property_id)
    catalog_facts.ensure_may_change(principal, prop.host_id)
    return principal, runtime, prop


@router.get("/properties/{property_id}")
async def property_page(property_id: uuid.UUID, request: Request) -> Response:
    _, runtime, prop = await _own_property(request, property_id)
    return await _property_page(request, prop)


async def _property_page(request: Request, prop, status: int = 200, problem: StaybookError | None = None,
                         notice: str | None = None) -> Response:  # fmt: skip
    runtime, _, _ = page_state(request)
    photos = await catalog.list_photos(runtime, prop.id)
    context = _property_context(prop.model_dump(), problem)
    if request.query_params.get("created") == "1" and notice is None:
        notice = "The property is listed. Add its room types and photos."
    return render(request, "host/property.html", status=status, prop=prop, photos=photos, notice=notice, **context)


@router.post("/properties/{property_id}")
async def update_property(property_id: uuid.UUID, request: Request) -> Response:
    principal, runtime, prop = await _own_property(request, property_id)
    raw = await request.form()
    try:
        form = parse_form(PropertyForm, raw, lists=("amenities",))
        changes = _build(PropertyUpdate, form.model_dump())
        prop = await catalog.update_property(runtime, principal, property_id, changes)
    except StaybookError as error:
        return await _property_page(request, prop, error.status, error)
    await pages.invalidate_property(runtime, property_id)
    return await _property_page(request, prop, notice="Saved.")


@router.post("/properties/{property_id}/archive")
async def archive_property(property_id: uuid.UUID, request: Request) -> Response:
    principal, runtime, _ = await _own_property(request, property_id)
    await catalog.archive_property(runtime, principal, property_id)
    await pages.invalidate_property(runtime, property_id)
    return redirect("/host/properties")


@router.post("/properties/{property_id}/photos")
async def upload_photo(property_id: uuid.UUID, request: Request, catalog_deps: CatalogDep) -> Response:
    """The photo form posts here by XMLHttpRequest (for its progress bar) or as a plain form."""
    principal, runtime, prop = await _own_property(request, property_id)
    upload = (await request.form()).get("photo")
    if not isinstance(upload, UploadFile):
        raise InvalidInput("Choose a photo to upload.", field="photo")
    data = await upload.read(runtime.settings.catalog.max_photo_bytes + 1)
    await catalog.upload_photo(runtime, principal, property_id, data, store=catalog_deps.media)
    return redirect(f"/host/properties/{property_id}#photos")


@router.post("/properties/{property_id}/room-types")
async def create_room_type(property_id: uuid.UUID, request: Request) -> Response:
    principal, runtime, prop = await _own_property(request, property_id)
    try:
        form = parse_form(RoomTypeForm, await request.form())
        values = form.model_dump()
        values["base_price"] = {"amount": to_minor_units(form.base_price, prop.currency, "base_price"),
                                "currency": prop.currency}  # fmt: skip
        created = await catalog.create_room_type(runtime, principal, property_id, _build(RoomTypeCreate, values))
    except StaybookError as error:
        return await _property_page(request, prop, error.status, error)
    await pages.invalidate_property(runtime, property_id)
    return redirect(f"/host/room-types/{created.id}/calendar")


async def _own_room_type(request: Request, room_type_id: uuid.UUID):
    principal = host(request)
    runtime, _, _ = page_state(request)
    room_type = await catalog.get_room_type(runtime, room_type_id)
    prop = await catalog.get_property(runtime, room_type.property_id)
    catalog_facts.ensure_may_change(principal, prop.host_id)
    return principal, runtime, prop, room_type


@router.post("/room-types/{room_type_id}")
async def update_room_type(room_type_id: uuid.UUID, request: Request) -> Response:
    principal, runtime, prop, room_type = await _own_room_type(request, room_type_id)
    form = parse_form(RoomTypeForm, await request.form())
    values = form.model_dump()
    values["base_price"] = {"amount": to_minor_units(form.base_price, prop.currency, "base_price"),
                            "currency": prop.currency}  # fmt: skip
    await catalog.update_room_type(runtime, principal, room_type_id, _build(RoomTypeUpdate, values))
    await pages.invalidate_property(runtime, prop.id)
    return redirect(f"/host/room-types/{room_type_id}/calendar")


@router.post("/room-types/{room_type_id}/archive")
async def archive_room_type(room_type_id: uuid.UUID, request: Request) -> Response:
    principal, runtime, prop, _ = await _own_room_type(request, room_type_id)
    await catalog.archive_room_type(runtime, principal, room_type_id)
    await pages.invalidate_property(runtime, prop.id)
    return redirect(f"/host/properties/{prop.id}")


# --------------------------------------------------------------------------- calendar grid and sync


@router.get("/room-types/{room_type_id}/calendar")
async def calendar(room_type_id: uuid.UUID, request: Request) -> Response:
    return await _calendar_page(request, room_type_id)


async def _calendar_page(request: Request, room_type_id: uuid.UUID, status: int = 200, notice: str | None = None,
                         problem: StaybookError | None = None, feed_url: str | None = None) -> Response:  # fmt: skip
    principal, runtime, prop, room_type = await _own_room_type(request, room_type_id)
    _, _, locale = page_state(request)
    today = pages.property_today(prop.timezone)
    month = pages.month_of(request.query_params.get("month"), today, today)
    nights = await pages.room_type_month(runtime, room_type_id, month)
    if feed_url is None:
        feed_url = (await inventory_api.calendar_feed(room_type_id, request, principal, runtime)).url
    return render(
        request,
        "host/calendar.html",
        status=status,
        prop=prop,
        room_type=room_type,
        month=month,
        month_label=i18n.month_name(month.year, month.month, locale),
        weekdays=i18n.weekday_names(locale),
        weeks=pages.month_grid(month, nights, today),
        previous_month=pages.previous_month(month),
        next_month=pages.next_month(month),
        feed_url=feed_url,
        notice=notice,
        problem=problem.detail if problem else None,
        errors=(problem.extensions.get("errors") or []) if problem else [],
    )


def calendar_update(form: CalendarForm, currency: str) -> CalendarUpdate:
    """The grid's form as inventory's bulk change over [start, end] (the grid selects nights inclusively)."""
    body: dict = {"from": form.start, "to": form.end + timedelta(days=1)}
    if form.price:
        body["price"] = {"amount": to_minor_units(form.price, currency, "price"), "currency": currency}
    if form.units is not None:
        body["units"] = form.units
    if form.availability != "keep":
        body["closed"] = form.availability == "closed"
    if form.min_stay is not None:
        body["min_stay"] = form.min_stay
    if form.arrival != "keep":
        body["closed_to_arrival"] = form.arrival == "closed"
    rules = []
    if form.weekend_percent:
        rules.append({"kind": "weekday", "percent": form.weekend_percent, "weekdays": [4, 5]})
    if form.season_percent and form.season_start and form.season_end:
        rules.append({"kind": "seasonal", "percent": form.season_percent, "start": form.season_start,
                      "end": form.season_end})  # fmt: skip
    if rules:
        body["rules"] = rules
    if len(body) == 2:
        raise InvalidInput("Say what to change: a price, units, open or closed, a minimum stay or a rule.")
    return _build(CalendarUpdate, body)


@router.post("/room-types/{room_type_id}/calendar")
async def change_calendar(room_type_id: uuid.UUID, request: Request) -> Response:
    principal, runtime, prop, _ = await _own_room_type(request, room_type_id)
    try:
        form = parse_form(CalendarForm, await request.form())
        await inventory_api.update_calendar(room_type_id, calendar_update(form, prop.currency), principal, runtime)
    except StaybookError as error:
        return await _calendar_page(request, room_type_id, error.status, problem=error)
    nights = (form.end - form.start).days + 1
    return await _calendar_page(request, room_type_id, notice=f"{nights} nights changed.")


@router.post("/room-types/{room_type_id}/calendar-feed/rotate")
async def rotate_feed(room_type_id: uuid.UUID, request: Request) -> Response:
    principal, runtime, _, _ = await _own_room_type(request, room_type_id)
    feed = await inventory_api.rotate_calendar_feed(room_type_id, request, principal, runtime)
    return await _calendar_page(request, room_type_id, feed_url=feed.url,
                                notice="A new export link is made; the old one no longer works.")  # fmt: skip


@router.post("/room-types/{room_type_id}/calendar/import")
async def import_calendar(room_type_id: uuid.UUID, request: Request) -> Response:
    principal, runtime, _, _ = await _own_room_type(request, room_type_id)
    upload = (await request.form()).get("calendar")
    if not isinstance(upload, UploadFile):
        raise InvalidInput("Choose an .ics file to import.", field="calendar")
    try:
        result = await inventory_api.import_ical(room_type_id, principal, runtime, upload)
    except StaybookError as error:
        return await _calendar_page(request, room_type_id, error.status, problem=error)
    return await _calendar_page(
        request, room_type_id, notice=f"Imported {result.events} events: {result.closed_nights} nights closed."
    )


# --------------------------------------------------------------------------- bookings


@router.get("/bookings")
async def bookings(request: Request) -> Response:
    principal = host(request)
    runtime, _, _ = page_state(request)
    query = request.query_params
    filters = {name: query.get(name, "") for name in ("property_id", "from", "to", "status", "cursor")}
    try:
        property_id = uuid.UUID(filters["property_id"]) if filters["property_id"] else None
        start = date.fromisoformat(filters["from"]) if filters["from"] else None
        end = date.fromisoformat(filters["to"]) if filters["to"] else None
        cursor = uuid.UUID(filters["cursor"]) if filters["cursor"] else None
    except ValueError:
        raise InvalidInput("The filters are not valid: dates are YYYY-MM-DD.") from None
    page = await booking.list_for_host(runtime, principal, property_id=property_id, start=start, end=end,
                                       cursor=cursor, limit=50)  # fmt: skip
    items = [b for b in page["items"] if not filters["status"] or b["status"] == filters["status"]]
    properties = (await catalog.host_properties(runtime, principal, cursor=None, limit=200)).items
    return render(request, "host/bookings.html", items=items, next_cursor=page["next_cursor"], filters=filters,
                  properties=properties)  # fmt: skip


@router.get("/bookings/{booking_id}")
async def booking_details(booking_id: uuid.UUID, request: Request) -> Response:
    principal = host(request)
    runtime, _, _ = page_state(request)
    view = await booking.get_booking(runtime, principal, booking_id)
    return render(request, "host/booking.html", booking=view)
