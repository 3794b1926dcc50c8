"""HTTP routes of the search context: search, suggest, and an admin's online rebuild."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import QueryParams

from staybook.kernel.dates import check_stay, stay_fields_in
from staybook.kernel.errors import InvalidInput, StaybookError, Unauthorized
from staybook.kernel.runtime import Runtime
from staybook.kernel.security import require_role
from staybook.kernel.settings import InventorySettings
from staybook.search import service
from staybook.search.bootstrap import CONTEXT, SearchDep
from staybook.search.metrics import SEARCH_DURATION
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


class SearchParams(BaseModel):
    """The query parameters of `GET /search`, validated in one step (one pydantic call, not one
    dependency per parameter); also the source of the parameters the OpenAPI schema documents."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    check_in: date = Field(description="First night, YYYY-MM-DD", examples=["2027-03-01"])
    check_out: date = Field(description="Departure day (exclusive), YYYY-MM-DD", examples=["2027-03-04"])
    guests: int = Field(2, ge=1, le=MAX_GUESTS)
    rooms: int = Field(1, ge=1, le=MAX_ROOMS)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    radius_km: float | None = Field(None, gt=0, le=MAX_RADIUS_KM)
    city: str | None = Field(None, min_length=1, max_length=120, examples=["Paris"])
    country: str | None = Field(None, pattern=r"^[A-Za-z]{2}$")
    bbox: str | None = Field(None, max_length=100, description="south,west,north,east")
    q: str | None = Field(None, min_length=1, max_length=MAX_TEXT_LENGTH, description="Name, city, description")
    price_min: int | None = Field(None, ge=0, le=10**12, description="Stay total, minor units of `currency`")
    price_max: int | None = Field(None, ge=0, le=10**12, description="Stay total, minor units of `currency`")
    currency: str | None = Field(None, min_length=3, max_length=3)
    amenities: list[str] | None = Field(None, max_length=MAX_AMENITIES, description="All of; repeat or comma-separate")
    property_type: str | None = Field(None, max_length=30)
    min_rating: float | None = Field(None, ge=0, le=5)
    sort: str = Field("relevance", pattern="^(" + "|".join(SORTS) + ")$")
    limit: int = Field(20, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(None, max_length=300)


def _openapi_parameters(model: type[BaseModel]) -> list[dict]:
    """OpenAPI query parameters from a model's JSON schema (the route itself reads the raw query)."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema["properties"].items():
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            parameter["description"] = prop["description"]
        if name == "amenities":
            parameter |= {"style": "form", "explode": True}
        parameters.append(parameter)
    return parameters


def _validate(params: QueryParams) -> SearchParams:
    raw: dict[str, object] = dict(params)  # the last value of a repeated name, as FastAPI reads it
    if "amenities" in raw:
        raw["amenities"] = params.getlist("amenities")
    try:
        return SearchParams.model_validate(raw)
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("query", *e["loc"])} for e in error.errors(include_url=False, include_context=False)]
        ) from None


@lru_cache(maxsize=4096)
def _folded(text: str) -> str:
    return fold(text)


@router.get(
    "/search",
    response_model=SearchResponse,
    summary="Search stays by place, dates, party, price and amenities",
    responses={422: {"description": "Invalid input (problem+json)"}, 414: {"description": "Query string too long"}},
    openapi_extra={"parameters": _openapi_parameters(SearchParams)},
)
async def search(request: Request) -> Response:
    """Served by `SearchFastPath` in the app; this route documents the operation and answers the
    searches that come before the first routed one."""
    runtime = request.app.state.runtime
    audience = await audience_of(runtime, request.headers.get("authorization"))
    return Response(await search_body(runtime, request.scope["query_string"], audience), media_type="application/json")


async def audience_of(runtime: Runtime, authorization: str | None) -> str | None:
    """Whose profile may order the results: the bearer token's user. Search is public, so a
    missing, malformed, expired or revoked token just means an anonymous search."""
    if not authorization or not authorization[:7].lower() == "bearer ":
        return None
    try:
        principal = await runtime.token_versions.check(runtime.tokens.verify(authorization[7:].strip()))
    except Unauthorized:
        return None
    return "u:" + principal.user_id.hex


async def search_body(runtime: Runtime, query_string: bytes, audience: str | None = None) -> bytes:
    started = time.perf_counter()
    try:
        return await _search_body(runtime, query_string, audience)
    finally:
        SEARCH_DURATION.observe(time.perf_counter() - started)


async def _search_body(runtime: Runtime, query_string: bytes, audience: str | None) -> bytes:
    """The answer to a search query string as the JSON bytes sent: from the response cache by raw
    query string (and audience) when it was asked within `cache_seconds` (no validation), else
    validated in one pydantic call and answered by the service (no response model serialisation).
    Observers hear of every search answered."""
    if len(query_string) > MAX_QUERY_STRING:
        raise QueryStringTooLong(f"query strings are limited to {MAX_QUERY_STRING} bytes")
    deps: service.SearchDeps = runtime.context_deps[CONTEXT]  # the one lookup a search makes
    for observe in deps.observers:
        observe(query_string)
    ttl = deps.settings.search.cache_seconds
    cache_key = query_string if audience is None else query_string + b"#" + audience.encode()
    if ttl > 0:
        cached = deps.raw_responses.get(cache_key)
        if cached is not None:
            return cached
    params = _validate(QueryParams(query_string))
    body = await service.search_json(deps, search_query(deps, params, audience), params.cursor)
    if ttl > 0:
        deps.raw_responses.put(cache_key, body, ttl)
    return body


class SearchFastPath:
    """Serves `GET <prefix>/search` without FastAPI's route matching and request handling, which
    cost a search more than its validation does (the app tries every route in order). Installed
    inside the kernel's middleware, so request ids, trace context, metrics, the gateway's per-IP
    rate limit and security headers apply as to routed requests; errors become the same
    problem+json through the app's own exception handlers, and unhandled ones propagate as they
    would from the route. Until the route has been matched once (it is what labels the request in
    the metrics), and for any other method, requests go on to the router unchanged."""

    def __init__(self, app, prefix: str = "") -> None:
        self.app = app
        self.path = prefix + "/search"
        self.route = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "GET" or self.route is None:
            await self.app(scope, receive, send)
            if self.route is None and scope["type"] == "http" and scope["path"] == self.path:
                self.route = scope.get("route")
            return
        scope["route"] = self.route
        app = scope["app"]
        try:
            runtime = app.state.runtime
            audience = await audience_of(runtime, _authorization(scope))
            body = await search_body(runtime, scope["query_string"], audience)
        except Exception as error:
            handler = _exception_handler(app, error)
            if handler is None:
                raise
            response = await handler(Request(scope, receive), error)
            await response(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _exception_handler(app, error: Exception):
    """The handler the app's exception middleware would pick (by the error's class hierarchy);
    None for those left to the server error middleware (500 / Exception), as routing leaves them."""
    handlers = app.exception_handlers
    for kind in type(error).__mro__:
        if kind is Exception:
            return None
        if kind in handlers:
            return handlers[kind]
    return None


MIDDLEWARE = (SearchFastPath,)


def _authorization(scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return value.decode("latin-1")
    return None


def search_query(deps: service.SearchDeps, p: SearchParams, audience: str | None = None) -> SearchQuery:
    """Checks what one parameter alone cannot say (places that go together, dates against the
    bookable window, vocabularies) and builds the `SearchQuery` both backends answer."""
    circle = None
    if p.lat is not None or p.lon is not None or p.radius_km is not None:
        if p.lat is None or p.lon is None or p.radius_km is None:
            raise InvalidInput("lat, lon and radius_km go together", field="query.radius_km")
        circle = Circle(p.lat, p.lon, p.radius_km)
    box = parse_bbox(p.bbox) if p.bbox is not None else None
    if sum(x is not None for x in (circle, box, p.city)) > 1:
        raise InvalidInput("give one place: lat/lon/radius_km, city or bbox", field="query.city")
    if circle is None and box is None and p.city is None and p.q is None:
        raise InvalidInput("say where: lat/lon/radius_km, city, bbox or q", field="query.q")
    if p.country is not None and p.city is None:
        raise InvalidInput("country narrows a city", field="query.country")
    settings = deps.settings
    _check_dates(settings.inventory, p.check_in, p.check_out)
    if p.price_min is not None and p.price_max is not None and p.price_min > p.price_max:
        raise InvalidInput("price_min is above price_max", field="query.price_min")
    wanted = _split(p.amenities)
    unknown = [a for a in wanted if a not in AMENITY_SET]
    if unknown:
        raise InvalidInput(f"unknown amenity {unknown[0][:40]!r}", field="query.amenities")
    if p.property_type is not None and p.property_type not in PROPERTY_TYPES:
        raise InvalidInput(f"unknown property type {p.property_type!r}", field="query.property_type")
    if p.sort == "distance" and circle is None:
        raise InvalidInput("sort=distance needs lat, lon and radius_km", field="query.sort")
    rates = deps.rates
    return SearchQuery(
        check_in=p.check_in,
        check_out=p.check_out,
        guests=p.guests,
        rooms=p.rooms,
        circle=circle,
        bbox=box,
        city=None if p.city is None else _folded(p.city),
        country=None if p.country is None else p.country.upper(),
        text=None if p.q is None else _folded(p.q),
        currency=rates.check(p.currency or settings.search.default_currency),
        price_min=p.price_min,
        price_max=p.price_max,
        amenities=tuple(sorted(set(wanted))),
        property_type=p.property_type,
        min_rating=None if p.min_rating is None else round(p.min_rating * 10),
        sort=p.sort,
        limit=p.limit,
        audience=audience if p.sort == "relevance" else None,
    )


def _check_dates(inventory: InventorySettings, check_in: date, check_out: date) -> None:
    with stay_fields_in("query"):
        check_stay(check_in, check_out, max_nights=inventory.max_stay_nights, horizon_days=inventory.horizon_days)


@router.get("/search/suggest", response_model=SuggestResponse, summary="Autocomplete places and property names")
async def suggest(
    request: Request,
    deps: SearchDep,
    q: str = Query(..., min_length=1, max_length=100),
    limit: int = Query(10, ge=1, le=20),
) -> Response:
    _guard_size(request)
    return _json({"items": await service.suggest(deps, q, limit)})


@router.post(
    "/search/reindex",
    response_model=RebuildReport,
    summary="Rebuild this process's search index from the database, online",
    dependencies=[Depends(require_role("admin"))],
)
async def rebuild(deps: SearchDep) -> Response:
    started = datetime.now(UTC)
    counts = await service.reindex(deps)
    seconds = (datetime.now(UTC) - started) / timedelta(seconds=1)
    return _json({**counts, "seconds": round(seconds, 3)})
