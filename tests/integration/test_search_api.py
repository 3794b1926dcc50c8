"""The search API over a real database and bus: built from the tables at start, kept current by
events (a hold that takes the last unit, an archived property), rebuilt online, and refusing bad input."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from staybook.catalog.models import Property, RoomType
from staybook.inventory import service as inventory
from staybook.kernel.events import Event
from staybook.search import service as search_service
from staybook.search.bootstrap import search_deps
from tests.conftest import bearer

TODAY = datetime.now(UTC).date()
CHECK_IN = TODAY + timedelta(days=10)
CHECK_OUT = CHECK_IN + timedelta(days=2)


class PropertyArchived(Event):
    """The catalog's event as docs/events.md defines it (the catalog API is not on this branch)."""

    context: ClassVar[str] = "catalog"
    event_type: ClassVar[str] = "property.archived"
    property_id: uuid.UUID
    host_id: uuid.UUID


async def seed(runtime, *, units: int = 1) -> list[uuid.UUID]:
    """Three Berlin properties with one room type each and a 30-night calendar."""
    ids = []
    async with runtime.db.unit_of_work() as uow:
        for n in range(3):
            property_id, room_type_id = uuid.uuid4(), uuid.uuid4()
            ids.append(property_id)
            uow.session.add(
                Property(
                    id=property_id,
                    host_id=uuid.uuid4(),
                    name=f"Spree Hotel {n}",
                    description="Quiet rooms",
                    property_type="hotel",
                    address="Unter den Linden 1",
                    city="Berlin",
                    country="DE",
                    latitude=52.52 + n * 0.01,
                    longitude=13.40,
                    timezone="Europe/Berlin",
                    currency="EUR",
                    amenities=["wifi"],
                    rating_tenths=40 + n,
                    status="active",
                )
            )
            await uow.session.flush()
            uow.session.add(
                RoomType(
                    id=room_type_id,
                    property_id=property_id,
                    name="Double",
                    max_guests=2,
                    units=units,
                    base_price_amount=10_000 + n * 1_000,
                    currency="EUR",
                    status="active",
                )
            )
            await uow.session.flush()
            await inventory.open_calendar(
                uow,
                property_id=property_id,
                room_type_id=room_type_id,
                total=units,
                price_amount=10_000 + n * 1_000,
                currency="EUR",
                start=TODAY,
                days=30,
            )
    return ids


async def room_type_of(runtime, property_id: uuid.UUID) -> uuid.UUID:
    from sqlalchemy import select

    async with runtime.db.session() as session:
        return await session.scalar(select(RoomType.id).where(RoomType.property_id == property_id))


async def eventually(predicate, timeout: float = 15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


PARAMS = {"city": "Berlin", "country": "DE", "check_in": CHECK_IN.isoformat(), "check_out": CHECK_OUT.isoformat()}


async def test_last_unit_held_and_archived_property_leave_the_results(live_settings, make_runtime, client_for):
    seeder = await make_runtime(live_settings)
    ids = await seed(seeder)
    async with client_for(live_settings) as client:
        runtime = client.app.state.runtime
        found = await client.get("/api/v1/search", params=PARAMS)
        assert found.status_code == 200, found.text
        body = found.json()
        assert {item["property_id"] for item in body["items"]} == {str(i) for i in ids}
        assert body["facets"]["amenities"] == {"wifi": 3}
        first = next(item for item in body["items"] if item["property_id"] == str(ids[0]))
        assert first["total"] == {"amount": 20_000, "currency": "EUR"} and len(first["nightly_prices"]) == 2

        async with runtime.db.unit_of_work() as uow:
            await inventory.hold(uow, inventory.Stay(await room_type_of(runtime, ids[0]), CHECK_IN, CHECK_OUT, 1))
        async with runtime.db.unit_of_work() as uow:
            # What the catalog's archive does: the row changes and the event goes out with it.
            (await uow.session.get(Property, ids[1])).status = "archived"
            uow.emit(PropertyArchived(property_id=ids[1], host_id=uuid.uuid4()))

        async def gone() -> bool:
            result = (await client.get("/api/v1/search", params=PARAMS)).json()
            return {item["property_id"] for item in result["items"]} == {str(ids[2])}

        await eventually(gone)
        # Other dates of the held property are still for sale.
        later = {**PARAMS, "check_in": CHECK_OUT.isoformat(), "check_out": (CHECK_OUT + timedelta(days=1)).isoformat()}
        assert str(ids[0]) in {
            i["property_id"] for i in (await client.get("/api/v1/search", params=later)).json()["items"]
        }
        # The worker's roll-forward job may have opened more nights since the seed.
        counts = await search_service.reindex(search_deps(runtime))
        assert counts["properties"] == 3 and counts["room_types"] == 3 and counts["room_nights"] >= 90
        assert await gone()


async def test_reindex_during_queries_serves_no_errors(sqlite_settings, make_runtime, client_for):
    seeder = await make_runtime(sqlite_settings)
    await seed(seeder, units=5)
    async with client_for(sqlite_settings) as client:
        admin = bearer(sqlite_settings, "admin")

        async def query_many() -> list[int]:
            statuses = []
            for n in range(60):
                response = await client.get("/api/v1/search", params={**PARAMS, "guests": 1 + n % 2})
                statuses.append(response.status_code)
                assert len(response.json()["items"]) == 3
                await asyncio.sleep(0)
            return statuses

        async def rebuild_many() -> list[int]:
            return [(await client.post("/api/v1/search/reindex", headers=admin)).status_code for _ in range(4)]

        queries, rebuilds = await asyncio.gather(query_many(), rebuild_many())
        assert set(queries) == {200} and set(rebuilds) == {200}
        assert (
            await client.post("/api/v1/search/reindex", headers=bearer(sqlite_settings, "guest"))
        ).status_code == 403


async def test_pages_suggestions_and_cache(sqlite_settings, make_runtime, client_for):
    seeder = await make_runtime(sqlite_settings)
    ids = await seed(seeder)
    async with client_for(sqlite_settings) as client:
        first = (await client.get("/api/v1/search", params={**PARAMS, "limit": 2, "sort": "price"})).json()
        assert [i["property_id"] for i in first["items"]] == [str(ids[0]), str(ids[1])]
        second = (
            await client.get(
                "/api/v1/search", params={**PARAMS, "limit": 2, "sort": "price", "cursor": first["next_cursor"]}
            )
        ).json()
        assert [i["property_id"] for i in second["items"]] == [str(ids[2])] and second["next_cursor"] is None
        again = (await client.get("/api/v1/search", params={**PARAMS, "limit": 2, "sort": "price"})).json()
        assert again == first
        suggestions = (await client.get("/api/v1/search/suggest", params={"q": "spree h"})).json()["items"]
        assert {s["label"] for s in suggestions} == {"Spree Hotel 0", "Spree Hotel 1", "Spree Hotel 2"}
        typo = (
            await client.get(
                "/api/v1/search",
                params={"check_in": PARAMS["check_in"], "check_out": PARAMS["check_out"], "q": "sprre"},
            )
        ).json()
        assert len(typo["items"]) == 3


BAD = [
    {"lat": 52.5, "lon": 13.4, "radius_km": 0},
    {"lat": 52.5, "lon": 13.4, "radius_km": 501},
    {"lat": 91, "lon": 13.4, "radius_km": 5},
    {"lat": 52.5, "lon": -181, "radius_km": 5},
    {"lat": 52.5, "radius_km": 5},
    {"check_in": "2030-02-30"},
    {"check_out": CHECK_IN.isoformat()},
    {"check_in": (TODAY - timedelta(days=5)).isoformat()},
    {"check_out": (CHECK_IN + timedelta(days=400)).isoformat()},
    {"amenities": "wifi,teleporter"},
    {"currency": "XYZ"},
    {"limit": 101},
    {"cursor": "eyJmb28iOiJiYXIifQ"},
    {"q": "x" * 10_000},
    {"padding": "x" * 10_000},
    {"sort": "distance"},
    {"bbox": "1,2,3"},
    {"property_type": "spaceship"},
    {"city": None, "country": None},
]


async def test_bad_input_is_a_problem_never_a_crash(sqlite_settings, client_for):
    async with client_for(sqlite_settings) as client:
        for bad in BAD:
            params = {k: v for k, v in {**PARAMS, **bad}.items() if v is not None}
            response = await client.get("/api/v1/search", params=params)
            assert 400 <= response.status_code < 500, (bad, response.status_code, response.text[:300])
            assert response.headers["content-type"] == "application/problem+json", bad
        assert (await client.get("/api/v1/search/suggest", params={"q": "x" * 10_000})).status_code == 422


FIELD_OF_BAD = [
    ({"guests": "two"}, "query.guests"),
    ({"guests": 0}, "query.guests"),
    ({"limit": 101}, "query.limit"),
    ({"check_in": "2030-02-30"}, "query.check_in"),
    ({"sort": "cheapest"}, "query.sort"),
    ({"amenities": "wifi,teleporter"}, "query.amenities"),
    ({"lat": 52.5, "radius_km": 5}, "query.radius_km"),
    ({"check_out": CHECK_IN.isoformat()}, "query.check_out"),
]


async def test_every_bad_parameter_is_named_by_its_field_path(sqlite_settings, client_for):
    async with client_for(sqlite_settings) as client:
        for bad, field in FIELD_OF_BAD:
            params = {**PARAMS, **bad}
            for _ in range(2):  # the second time past the response cache in front of validation
                response = await client.get("/api/v1/search", params=params)
                assert 400 <= response.status_code < 500, (bad, response.text[:300])
                body = response.json()
                fields = [e["field"] for e in body.get("errors", ())] or [body.get("field")]
                assert field in fields, (bad, body)
        missing = await client.get("/api/v1/search", params={"city": "Berlin"})
        assert {e["field"] for e in missing.json()["errors"]} == {"query.check_in", "query.check_out"}


async def test_search_parameters_are_documented_in_the_openapi_schema(sqlite_settings, client_for):
    async with client_for(sqlite_settings) as client:
        spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/api/v1/search"]["get"]
    documented = {p["name"]: p for p in operation["parameters"]}
    assert {"check_in", "check_out", "lat", "lon", "radius_km", "city", "amenities", "sort", "cursor"} <= set(
        documented
    )
    assert documented["check_in"]["required"] and not documented["guests"]["required"]
    assert documented["limit"]["schema"]["maximum"] == 100
    assert "SearchResponse" in str(operation["responses"]["200"])


def _search_requests_counted(exposition: str) -> float:
    """Successful search requests in the HTTP metrics (the route label as routing records it)."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in exposition.splitlines()
        if line.startswith("staybook_http_requests_total") and '/search"' in line and 'status="200"' in line
    )


async def test_a_cached_answer_passes_the_gateway_and_is_counted_like_a_routed_one(
    sqlite_settings, make_runtime, client_for
):
    """A repeated query string is answered from the raw cache before routing (SearchFastPath); it
    still gets the routed answer's body and headers, the per-IP rate limit, and the route's series
    in the HTTP metrics."""
    settings = sqlite_settings.model_copy(
        update={"gateway": sqlite_settings.gateway.model_copy(update={"rate_limit_requests": 7})}
    )
    seeder = await make_runtime(settings)
    await seed(seeder)
    async with client_for(settings) as client:
        state = search_deps(client.app.state.runtime)
        routed = await client.get("/api/v1/search", params=PARAMS)
        counted_before = _search_requests_counted((await client.get("/metrics")).text)
        hits_before = state.raw_responses._hits._value.get()
        cached = await client.get("/api/v1/search", params=PARAMS)
        assert state.raw_responses._hits._value.get() == hits_before + 1  # answered by the raw cache
        assert _search_requests_counted((await client.get("/metrics")).text) == counted_before + 1
        assert cached.status_code == routed.status_code == 200
        assert cached.content == routed.content
        for name in ("content-type", "content-length", "x-content-type-options", "content-security-policy"):
            assert cached.headers[name] == routed.headers[name], name
        assert cached.headers["x-request-id"] and cached.headers["traceparent"]
        assert cached.headers["x-request-id"] != routed.headers["x-request-id"]
        # Two searches and two scrapes so far (/metrics counts too): the next three use the limit of
        # seven up, and the sixth search, though cached, is refused.
        for _ in range(3):
            assert (await client.get("/api/v1/search", params=PARAMS)).status_code == 200
        refused = await client.get("/api/v1/search", params=PARAMS)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["retry-after"]


async def test_the_fast_path_answers_and_refuses_as_the_route_does(sqlite_settings, make_runtime, client_for):
    """Without the cache, a fresh app's first search is routed and the same request again is
    answered by SearchFastPath: the same answer, the same problem+json."""
    settings = sqlite_settings.model_copy(
        update={"search": sqlite_settings.search.model_copy(update={"cache_seconds": 0})}
    )
    seeder = await make_runtime(settings)
    await seed(seeder)
    for params in ({**PARAMS, "limit": 2, "sort": "price"}, {**PARAMS, "guests": "two"}, {**PARAMS, "q": ""}):
        async with client_for(settings) as client:
            routed = await client.get("/api/v1/search", params=params)
            fast = await client.get("/api/v1/search", params=params)
            assert fast.status_code == routed.status_code, params
            assert fast.headers["content-type"] == routed.headers["content-type"], params
            assert fast.json() == routed.json(), params
