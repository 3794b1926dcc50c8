"""HTTP routes of the search context: search, suggest, and an admin's online rebuild."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from staybook.kernel.errors import InvalidInput, StaybookError
from staybook.kernel.runtime import Runtime, get_runtime
from staybook.kernel.security import require_role
from staybook.search import service
from staybook.search.query import (
    AMENITY_SET,
    MAX_AMENITIES,
    MAX_GUESTS,
    MAX_LIMIT,
    MAX_RADIUS_KM,
    MAX_ROOMS,
    MAX_TEXT_LENGTH,
    PROPERTY_TYPES,
    SORTS,
    BoundingBox,
    Circle,
    SearchQuery,
    fold,
)
from staybook.search.schemas import RebuildReport, SearchResponse, SuggestResponse

router = APIRouter(tags=["search"])

MAX_QUERY_STRING = 2048


class QueryStringTooLong(StaybookError):
    status, code, title = 414, "uri-too-long", "Query string too long"


def _json(document) -> Response:
    return Response(orjson.dumps(document), media_type="application/json")


def _guard_size(request: Request) -> None:
    if len(request.scope.get("query_string", b"")) > MAX_QUERY_STRING:
        raise QueryStringTooLong(f"query strings are limited to {MAX_QUERY_STRING} bytes")


def _split(values: list[str] | None) -> list[str]:
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def parse_bbox(raw: str) -> BoundingBox:
    invalid = InvalidInput("bbox is south,west,north,east in degrees", field="query.bbox")
    try:
        south, west, north, east = (float(part) for part in raw.split(","))
    except ValueError:
        raise invalid from None
    if not (-90 <= south <= north <= 90 and -180 <= west <= 180 and -180 <= east <= 180):
        raise invalid
    return BoundingBox(south, west, north, east)


@router.get(
    "/search",
    response_model=SearchResponse,
    summary="Search stays by place, dates, party, price and amenities",
    responses={422: {"description": "Invalid input (problem+json)"}, 414: {"description": "Query string too long"}},
)
async def search(
    request: Request,
    check_in: date = Query(..., description="First night, YYYY-MM-DD"),
    check_out: date = Query(..., description="Departure day (exclusive), YYYY-MM-DD"),
    guests: int = Query(2, ge=1, le=MAX_GUESTS),
    rooms: int = Query(1, ge=1, le=MAX_ROOMS),
    lat: float | None = Query(None, ge=-90, le=90),
    lon: float | None = Query(None, ge=-180, le=180),
    radius_km: float | None = Query(None, gt=0, le=MAX_RADIUS_KM),
    city: str | None = Query(None, min_length=1, max_length=120),
    country: str | None = Query(None, pattern=r"^[A-Za-z]{2}$"),
    bbox: str | None = Query(None, max_length=100, description="south,west,north,east"),
    q: str | None = Query(None, min_length=1, max_length=MAX_TEXT_LENGTH, description="Name, city, description"),
    price_min: int | None = Query(None, ge=0, le=10**12, description="Stay total, minor units of `currency`"),
    price_max: int | None = Query(None, ge=0, le=10**12, description="Stay total, minor units of `currency`"),
    currency: str | None = Query(None, min_length=3, max_length=3),
    amenities: list[str] | None = Query(None, max_length=MAX_AMENITIES, description="All of; repeat or comma-separate"),
    property_type: str | None = Query(None, max_length=30),
    min_rating: float | None = Query(None, ge=0, le=5),
    sort: str = Query("relevance", pattern="^(" + "|".join(SORTS) + ")$"),
    limit: int = Query(20, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, max_length=300),
    runtime: Runtime = Depends(get_runtime),
) -> Response:
    _guard_size(request)
    circle_parts = (lat, lon, radius_km)
    circle = None
    if any(part is not None for part in circle_parts):
        if any(part is None for part in circle_parts):
            raise InvalidInput("lat, lon and radius_km go together", field="query.radius_km")
        circle = Circle(lat, lon, radius_km)  # type: ignore[arg-type]
    box = parse_bbox(bbox) if bbox is not None else None
    if sum(x is not None for x in (circle, box, city)) > 1:
        raise InvalidInput("give one place: lat/lon/radius_km, city or bbox", field="query.city")
    if circle is None and box is None and city is None and q is None:
        raise InvalidInput("say where: lat/lon/radius_km, city, bbox or q", field="query.q")
    if country is not None and city is None:
        raise InvalidInput("country narrows a city", field="query.country")
    _check_dates(runtime, check_in, check_out)
    if price_min is not None and price_max is not None and price_min > price_max:
        raise InvalidInput("price_min is above price_max", field="query.price_min")
    wanted = _split(amenities)
    unknown = [a for a in wanted if a not in AMENITY_SET]
    if unknown:
        raise InvalidInput(f"unknown amenity {unknown[0][:40]!r}", field="query.amenities")
    if property_type is not None and property_type not in PROPERTY_TYPES:
        raise InvalidInput(f"unknown property type {property_type!r}", field="query.property_type")
    if sort == "distance" and circle is None:
        raise InvalidInput("sort=distance needs lat, lon and radius_km", field="query.sort")
    rates = service.state_of(runtime).rates
    query = SearchQuery(
        check_in=check_in,
        check_out=check_out,
        guests=guests,
        rooms=rooms,
        circle=circle,
        bbox=box,
        city=None if city is None else fold(city),
        country=None if country is None else country.upper(),
        text=None if q is None else fold(q),
        currency=rates.check(currency or runtime.settings.search.default_currency),
        price_min=price_min,
        price_max=price_max,
        amenities=tuple(sorted(set(wanted))),
        property_type=property_type,
        min_rating=None if min_rating is None else round(min_rating * 10),
        sort=sort,
        limit=limit,
    )
    return Response(await service.search_json(runtime, query, cursor), media_type="application/json")


def _check_dates(runtime: Runtime, check_in: date, check_out: date) -> None:
    if check_out <= check_in:
        raise InvalidInput("check_out must be after check_in", field="query.check_out")
    longest = runtime.settings.inventory.max_stay_nights
    if (check_out - check_in).days > longest:
        raise InvalidInput(f"stays are at most {longest} nights", field="query.check_out")
    first, last = service.bookable_window(runtime)
    if check_in < first:
        raise InvalidInput("check_in is in the past", field="query.check_in")
    if check_out > last:
        raise InvalidInput(f"check_out is beyond the bookable horizon ({last.isoformat()})", field="query.check_out")


@router.get("/search/suggest", response_model=SuggestResponse, summary="Autocomplete places and property names")
async def suggest(
    request: Request,
    q: str = Query(..., min_length=1, max_length=100),
    limit: int = Query(10, ge=1, le=20),
    runtime: Runtime = Depends(get_runtime),
) -> Response:
    _guard_size(request)
    return _json({"items": await service.suggest(runtime, q, limit)})


@router.post(
    "/search/reindex",
    response_model=RebuildReport,
    summary="Rebuild this process's search index from the database, online",
    dependencies=[Depends(require_role("admin"))],
)
async def rebuild(runtime: Runtime = Depends(get_runtime)) -> Response:
    started = datetime.now(UTC)
    counts = await service.reindex(runtime)
    seconds = (datetime.now(UTC) - started) / timedelta(seconds=1)
    return _json({**counts, "seconds": round(seconds, 3)})
