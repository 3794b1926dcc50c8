"""The Typesense backend: property documents in a clustered search engine, availability in-process.

Typesense answers what it is good at — text with typo tolerance, geo radius, amenities,
type and rating — and returns candidate property ids. Dates, guests, stay prices,
currency filters, sorting, facets and pages are then answered by the in-process
availability read model (`MemoryIndex.answer`), because date availability in Typesense
0.24 measured 100x slower (docs/adr/0010-search-read-model.md).

Documents live in a collection behind an alias: a rebuild imports into a new collection
and switches the alias in one call, so queries never see a half-filled collection.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from typing import Any

try:
    import typesense
    import typesense.exceptions
except ModuleNotFoundError as error:  # an optional extra; search.service imports this module only when chosen
    raise ModuleNotFoundError(
        "the Typesense search backend needs its client: pip install 'staybook[typesense]'", name=error.name
    ) from error

from staybook.kernel.errors import ServiceUnavailable
from staybook.kernel.settings import Settings
from staybook.search.index import (
    NightState,
    PropertyRecord,
    Ranker,
    RoomTypeRecord,
    SearchPage,
    Suggestion,
)
from staybook.search.memory import MemoryIndex
from staybook.search.query import SearchQuery, fold

PAGE = 250
# A text query matching more than this many properties is answered from its best matches.
MAX_TEXT_CANDIDATES = 10_000
IMPORT_BATCH = 5_000

SCHEMA_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "description", "type": "string"},
    {"name": "city", "type": "string"},
    {"name": "city_key", "type": "string", "facet": True},
    {"name": "country", "type": "string", "facet": True},
    {"name": "location", "type": "geopoint"},
    {"name": "lat", "type": "float"},
    {"name": "lon", "type": "float"},
    {"name": "amenities", "type": "string[]", "facet": True},
    {"name": "property_type", "type": "string", "facet": True},
    {"name": "rating", "type": "int32"},
]


def document(record: PropertyRecord) -> dict[str, Any]:
    return {
        "id": str(record.property_id),
        "name": record.name,
        "description": record.description[:2000],
        "city": record.city,
        "city_key": fold(record.city),
        "country": record.country.upper(),
        "location": [record.latitude, record.longitude],
        "lat": record.latitude,
        "lon": record.longitude,
        "amenities": list(record.amenities),
        "property_type": record.property_type,
        "rating": -1 if record.rating_tenths is None else record.rating_tenths,
    }


def _quoted(value: str) -> str:
    return "`" + value.replace("`", "") + "`"


def filters(query: SearchQuery) -> list[str]:
    """`filter_by` expressions for one query; several when a box crosses the antimeridian (union)."""
    parts = []
    if query.circle is not None:
        # A hair wider than asked: the read model re-checks the exact great-circle distance.
        radius = query.circle.radius_km * 1.001 + 0.01
        parts.append(f"location:({query.circle.lat}, {query.circle.lon}, {radius:.3f} km)")
    if query.city is not None:
        parts.append(f"city_key:={_quoted(query.city)}")
        if query.country is not None:
            parts.append(f"country:={_quoted(query.country)}")
    if query.property_type is not None:
        parts.append(f"property_type:={_quoted(query.property_type)}")
    if query.min_rating is not None:
        parts.append(f"rating:>={query.min_rating}")
    parts += [f"amenities:={_quoted(a)}" for a in query.amenities]
    if query.bbox is None:
        return [" && ".join(parts)]
    box = query.bbox
    lat = f"lat:[{box.south}..{box.north}]"
    spans = [(box.west, box.east)] if box.west <= box.east else [(box.west, 180.0), (-180.0, box.east)]
    return [" && ".join([*parts, lat, f"lon:[{west}..{east}]"]) for west, east in spans]


class TypesenseIndex:
    backend = "typesense"

    def __init__(self, client: typesense.Client, alias: str, availability: MemoryIndex) -> None:
        self.client = client
        self.alias = alias
        self.availability = availability
        self._pending: list[dict[str, Any]] | None = []  # documents gathered before `publish`

    @classmethod
    def create(cls, settings: Settings, availability: MemoryIndex) -> TypesenseIndex:
        if not settings.typesense_url:
            raise ValueError("settings.search.backend is 'typesense' but STAYBOOK_TYPESENSE_URL is not set")
        from urllib.parse import urlparse

        url = urlparse(settings.typesense_url)
        client = typesense.Client(
            {
                "nodes": [{"host": url.hostname, "port": url.port or 8108, "protocol": url.scheme or "http"}],
                "api_key": settings.typesense_api_key.get_secret_value(),
                "connection_timeout_seconds": 10,
                "num_retries": 1,
            }
        )
        alias = f"{settings.bus_namespace}_{settings.search.typesense_collection}"
        return cls(client, alias, availability)

    # ------------------------------------------------------------------ writes

    def property_count(self) -> int:
        return self.availability.property_count()

    async def put_properties(self, records: Iterable[PropertyRecord]) -> None:
        live, dead = [], []
        for record in records:
            self.availability.put_property(record)
            (live if record.active else dead).append(record)
        documents = [document(r) for r in live]
        if self._pending is not None:
            self._pending.extend(documents)
            return
        if documents:
            await asyncio.to_thread(
                self.client.collections[self.alias].documents.import_, documents, {"action": "upsert"}
            )
        for record in dead:
            await self.remove_property(record.property_id)

    async def remove_property(self, property_id: uuid.UUID) -> None:
        await self.availability.remove_property(property_id)
        if self._pending is not None:
            self._pending = [d for d in self._pending if d["id"] != str(property_id)]
            return
        try:
            await asyncio.to_thread(self.client.collections[self.alias].documents[str(property_id)].delete)
        except typesense.exceptions.ObjectNotFound:
            pass

    async def put_room_types(self, records: Iterable[RoomTypeRecord]) -> None:
        await self.availability.put_room_types(records)

    async def remove_room_type(self, room_type_id: uuid.UUID) -> None:
        await self.availability.remove_room_type(room_type_id)

    async def put_nights(self, room_type_id: uuid.UUID, property_id: uuid.UUID, nights: Iterable[NightState]) -> None:
        await self.availability.put_nights(room_type_id, property_id, nights)

    async def publish(self, *, rebuild: bool) -> None:
        """Imports the gathered documents into a new collection and points the alias at it.

        Without `rebuild`, a live collection that already holds as many documents is kept:
        every API process starting against one Typesense does not re-import the world.
        """
        documents, self._pending = self._pending or [], None
        await self.availability.publish(rebuild=rebuild)
        if not rebuild and await asyncio.to_thread(self._document_count) == self.availability.property_count():
            return
        await asyncio.to_thread(self._replace_collection, documents)

    def _document_count(self) -> int | None:
        try:
            return int(self.client.collections[self.alias].retrieve()["num_documents"])
        except typesense.exceptions.ObjectNotFound:
            return None

    def _replace_collection(self, documents: list[dict[str, Any]]) -> None:
        name = f"{self.alias}_{time.time_ns()}"
        self.client.collections.create({"name": name, "fields": SCHEMA_FIELDS})
        for start in range(0, len(documents), IMPORT_BATCH):
            results = self.client.collections[name].documents.import_(
                documents[start : start + IMPORT_BATCH], {"action": "create"}
            )
            failed = [r for r in results if not r.get("success")]
            if failed:
                raise RuntimeError(f"typesense refused {len(failed)} documents, e.g. {failed[0]}")
        try:
            previous = self.client.aliases[self.alias].retrieve()["collection_name"]
        except typesense.exceptions.ObjectNotFound:
            previous = None
        self.client.aliases.upsert(self.alias, {"collection_name": name})
        if previous and previous != name:
            self.client.collections[previous].delete()

    async def check_ready(self) -> None:
        """/health says ok long before a restarted Typesense can search its documents: compare counts."""
        count = await asyncio.to_thread(self._document_count)
        expected = self.availability.property_count()
        if count != expected:
            raise ServiceUnavailable(f"typesense holds {count} of {expected} properties")

    async def close(self) -> None:
        return None

    # ------------------------------------------------------------------ reads

    def _candidate_ids(self, query: SearchQuery) -> list[str]:
        ids: list[str] = []
        for filter_by in filters(query):
            page = 1
            while True:
                params = {
                    "q": query.text or "*",
                    "query_by": "name,city,description",
                    "filter_by": filter_by,
                    "per_page": PAGE,
                    "page": page,
                    "include_fields": "id",
                    "prefix": "false,true,false" if query.text else "false",
                    "num_typos": 1,
                    # Every word must match, as in the in-process backend.
                    "drop_tokens_threshold": 0,
                }
                if not filter_by:
                    params.pop("filter_by")
                result = self.client.collections[self.alias].documents.search(params)
                hits = result.get("hits", [])
                ids += [h["document"]["id"] for h in hits]
                if len(hits) < PAGE or len(ids) >= MAX_TEXT_CANDIDATES:
                    break
                page += 1
        return ids

    async def search(self, query: SearchQuery, ranker: Ranker) -> SearchPage:
        try:
            found = await asyncio.to_thread(self._candidate_ids, query)
        except (typesense.exceptions.TypesenseClientError, OSError) as error:
            raise ServiceUnavailable("the search engine is unavailable; try again shortly") from error
        slots, distances = self.availability.live_slots(found), None
        if query.circle is not None:
            slots, distances = self.availability.within_circle(slots, query.circle)
        return self.availability.answer(query, ranker, slots, distances)

    async def suggest(self, prefix: str, limit: int) -> list[Suggestion]:
        params = {
            "q": prefix,
            "query_by": "city,name",
            "prefix": "true,true",
            "per_page": min(limit * 3, PAGE),
            "include_fields": "id,name,city,country",
        }
        try:
            result = await asyncio.to_thread(self.client.collections[self.alias].documents.search, params)
        except (typesense.exceptions.TypesenseClientError, OSError) as error:
            raise ServiceUnavailable("the search engine is unavailable; try again shortly") from error
        folded = fold(prefix)
        cities: dict[tuple[str, str], Suggestion] = {}
        properties = []
        for hit in result.get("hits", []):
            doc = hit["document"]
            if fold(doc["city"]).startswith(folded):
                cities.setdefault(
                    (fold(doc["city"]), doc["country"]), Suggestion("city", doc["city"], doc["city"], doc["country"])
                )
            properties.append(Suggestion("property", doc["name"], doc["city"], doc["country"], uuid.UUID(doc["id"])))
        return (list(cities.values()) + properties)[:limit]
