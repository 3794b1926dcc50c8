"""The Typesense backend answers like the in-process backend and the reference, and serves the API."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings

from staybook.inventory import service as inventory
from staybook.kernel.settings import Settings
from staybook.search.index import RatingRanker
from staybook.search.memory import MemoryIndex
from staybook.search.query import SearchQuery
from staybook.search.typesense import TypesenseIndex
from tests.search_reference import HORIZON, ORIGIN, make_dataset, reference_answer
from tests.unit.test_search import RATES, build, queries

DATA = make_dataset(11, size=60)


@pytest.fixture(scope="module")
def indexes(typesense_url):
    memory = build(DATA)
    typesense = TypesenseIndex.create(
        Settings(typesense_url=typesense_url, bus_namespace="t" + uuid.uuid4().hex[:10]),
        MemoryIndex(ORIGIN, HORIZON + 5, RATES, capacity=4),
    )

    async def load() -> None:
        await typesense.put_properties(DATA.properties)
        await typesense.put_room_types(DATA.room_types)
        for room_type in DATA.room_types:
            await typesense.put_nights(
                room_type.room_type_id, room_type.property_id, DATA.nights[room_type.room_type_id]
            )
        await typesense.publish(rebuild=True)
        await typesense.check_ready()

    asyncio.run(load())
    return memory, typesense


def answer(index, query: SearchQuery) -> dict:
    page = asyncio.run(index.search(replace(query, limit=100), RatingRanker()))
    return {hit.property_id: (hit.room_type_id, hit.total_in_currency) for hit in page.hits}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(q=queries)
def test_both_backends_agree_with_the_reference(indexes, q):
    memory, typesense = indexes
    expected = reference_answer(DATA, q, RATES)
    assert answer(memory, q) == expected
    assert answer(typesense, q) == expected


def test_typesense_text_is_typo_tolerant_and_suggests(indexes):
    _, typesense = indexes
    name = next(p for p in DATA.properties if p.active).name
    q = SearchQuery(
        ORIGIN + timedelta(days=1), ORIGIN + timedelta(days=2), guests=1, text=name.lower().replace("hotel", "hotle")
    )
    ids = {hit.property_id for hit in asyncio.run(typesense.search(q, RatingRanker())).hits}
    memory_ids = {hit.property_id for hit in asyncio.run(indexes[0].search(q, RatingRanker())).hits}
    assert ids == memory_ids
    suggestions = asyncio.run(typesense.suggest("pari", 5))
    assert suggestions and suggestions[0].kind == "city" and suggestions[0].label == "Paris"


async def test_api_on_typesense_follows_holds(sqlite_settings, typesense_url, make_runtime, client_for):
    from tests.integration.test_search_api import PARAMS, eventually, room_type_of, seed

    live = sqlite_settings.model_copy(
        update={
            "run_worker_in_process": True,
            "typesense_url": typesense_url,
            "bus_namespace": "t" + uuid.uuid4().hex[:10],
            "search": sqlite_settings.search.model_copy(update={"backend": "typesense", "cache_seconds": 0}),
        }
    )
    ids = await seed(await make_runtime(live))
    async with client_for(live) as client:
        runtime = client.app.state.runtime
        assert (await client.get("/healthz/ready")).json()["checks"]["search"] == "ok"
        body = (await client.get("/api/v1/search", params=PARAMS)).json()
        assert {i["property_id"] for i in body["items"]} == {str(i) for i in ids}
        text = (
            await client.get(
                "/api/v1/search",
                params={"check_in": PARAMS["check_in"], "check_out": PARAMS["check_out"], "q": "sprre"},
            )
        ).json()
        assert len(text["items"]) == 3
        async with runtime.db.unit_of_work() as uow:
            await inventory.hold(uow, inventory.Stay(await room_type_of(runtime, ids[0]), *_stay()))

        async def gone() -> bool:
            result = (await client.get("/api/v1/search", params=PARAMS)).json()
            return str(ids[0]) not in {i["property_id"] for i in result["items"]}

        await eventually(gone)


def _stay():
    from tests.integration.test_search_api import CHECK_IN, CHECK_OUT

    return CHECK_IN, CHECK_OUT, 1
