"""Use cases of the search context: answer searches and suggestions, keep the read model current, rebuild it.

The read model lives in each API process (`SearchDeps.index`, built by `bootstrap.lifespan`). It is
built from the database at start, kept current by replica subscriptions to catalog and
inventory events, and rebuilt online by `reindex` (a new index is built beside the live
one, events arriving meanwhile are replayed onto it, then it replaces the old one in a
single assignment: queries never see a half-built index).
"""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import structlog
from prometheus_client import REGISTRY, Gauge

from staybook.catalog import facts as catalog
from staybook.inventory import service as inventory
from staybook.kernel import dates, metrics
from staybook.kernel.errors import InvalidInput, ServiceUnavailable
from staybook.kernel.events import EventEnvelope
from staybook.kernel.runtime import Runtime
from staybook.search.events import IndexRebuildRequested
from staybook.search.index import (
    NightState,
    PropertyRecord,
    RatingRanker,
    RoomTypeRecord,
    SearchIndex,
    SearchPage,
)
from staybook.search.memory import MemoryIndex
from staybook.search.metrics import INDEX_LAG
from staybook.search.query import CursorCodec, PageMark, SearchQuery
from staybook.search.rates import CurrencyRates

log = structlog.get_logger("staybook.search")

SUBJECTS = (
    "staybook.catalog.property.>",
    "staybook.catalog.room_type.>",
    "staybook.inventory.inventory.changed",
)
Progress = Callable[[str, int, int | None], None]


class ResponseCache:
    """Search responses by normalised query, held as the JSON bytes sent: a hit is one dict lookup,
    no (de)serialising. Per process, like the index it caches; bounded by entry count."""

    def __init__(self, max_entries: int = 20_000, *, count_misses: bool = True) -> None:
        self.max_entries = max_entries
        self.count_misses = count_misses
        self._entries: dict[str | bytes, tuple[float, bytes]] = {}
        self._hits = metrics.CACHE_REQUESTS.labels("search", "hit")
        self._misses = metrics.CACHE_REQUESTS.labels("search", "miss")

    def get(self, key: str | bytes) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            if self.count_misses:
                self._misses.inc()
            return None
        self._hits.inc()
        return entry[1]

    def put(self, key: str | bytes, value: bytes, ttl_seconds: float) -> None:
        if len(self._entries) >= self.max_entries:
            now = time.monotonic()
            self._entries = {k: e for k, e in self._entries.items() if e[0] >= now}
            if len(self._entries) >= self.max_entries:  # all fresh: drop the older half
                self._entries = dict(list(self._entries.items())[self.max_entries // 2 :])
        self._entries[key] = (time.monotonic() + ttl_seconds, value)


SearchObserver = Callable[[bytes], None]


class SearchDeps:
    """What search owns in a process: the index and the ranker that answer queries, the observers
    that hear of every search (personalisation's served-search signals), the rates table, the
    cursor codec, the response caches and the rebuild's event buffer.

    Built by `bootstrap.lifespan`; the index is replaced whole by a rebuild (one assignment),
    and a context above search (personalisation) may set the ranker and add observers in its
    own lifespan."""

    def __init__(self, runtime: Runtime, index: SearchIndex | None = None, ranker: Any = None) -> None:
        settings = runtime.settings
        self.runtime = runtime  # the rebuild reads the database, and other contexts' listings, through it
        self.settings = settings
        self.index: SearchIndex = index  # type: ignore[assignment]  # set by the lifespan before any query
        self.ranker = ranker if ranker is not None else RatingRanker()
        self.observers: list[SearchObserver] = []
        self.rates = CurrencyRates(settings.search.rates or None)
        self.codec = CursorCodec(settings.secret_key.get_secret_value().encode())
        self.responses = ResponseCache()
        # In front of it, answers by the raw query string: a repeated request skips validation too.
        # A miss there is counted by `responses`, so each request counts once in the hit rate.
        self.raw_responses = ResponseCache(count_misses=False)
        self.rebuilding: list[EventEnvelope] | None = None
        self.build_error: str | None = None
        self.lock = asyncio.Lock()
        # A rebuild asked for over the bus (`staybook search reindex`), and whether another is due.
        self.rebuild_task: asyncio.Task | None = None
        self.rebuild_again = False


def bookable_window(runtime: Runtime) -> tuple[date, date]:
    """The first check-in day and the last check-out day the index covers.

    It starts yesterday (UTC) so a guest in a timezone ahead of UTC can still book "tonight".
    """
    return dates.bookable_window(runtime.settings.inventory.horizon_days)


def new_index(deps: SearchDeps) -> SearchIndex:
    runtime = deps.runtime
    origin, end = bookable_window(runtime)
    availability = MemoryIndex(origin, (end - origin).days, deps.rates)
    if runtime.settings.search.backend == "typesense":
        from staybook.search.typesense import TypesenseIndex

        return TypesenseIndex.create(runtime.settings, availability)
    return availability


# ---------------------------------------------------------------------------- events in


def property_record(payload: dict[str, Any]) -> PropertyRecord:
    rating = payload.get("rating")
    return PropertyRecord(
        property_id=uuid.UUID(str(payload["property_id"])),
        name=payload.get("name") or "",
        city=payload.get("city") or "",
        country=(payload.get("country") or "").upper(),
        latitude=float(payload["latitude"]),
        longitude=float(payload["longitude"]),
        currency=(payload.get("currency") or "EUR").upper(),
        description=payload.get("description") or "",
        amenities=tuple(payload.get("amenities") or ()),
        property_type=payload.get("property_type") or "hotel",
        # The catalog publishes the rating in stars (4.5); the index keeps tenths.
        rating_tenths=None if rating is None else round(float(rating) * 10),
        thumbnail_url=payload.get("thumbnail_url"),
        active=(payload.get("status") or "active") == "active",
    )


def room_type_record(payload: dict[str, Any]) -> RoomTypeRecord:
    return RoomTypeRecord(
        room_type_id=uuid.UUID(str(payload["room_type_id"])),
        property_id=uuid.UUID(str(payload["property_id"])),
        name=payload.get("name") or "",
        max_guests=int(payload.get("max_guests") or 1),
        active=(payload.get("status") or "active") == "active",
    )


async def apply_event(index: SearchIndex, envelope: EventEnvelope) -> None:
    """Applies one catalog or inventory event to the index; idempotent (events carry whole state)."""
    payload, kind = envelope.payload, envelope.type
    if kind in ("property.created", "property.updated"):
        await index.put_properties([property_record(payload)])
    elif kind == "property.archived":
        await index.remove_property(uuid.UUID(str(payload["property_id"])))
    elif kind in ("room_type.created", "room_type.updated"):
        await index.put_room_types([room_type_record(payload)])
    elif kind == "room_type.archived":
        await index.remove_room_type(uuid.UUID(str(payload["room_type_id"])))
    elif kind == "inventory.changed":
        nights = [
            NightState(
                night=date.fromisoformat(str(n["night"])),
                available=int(n["available"]),
                price=int(n["price"]),
                closed=bool(n.get("closed")),
                closed_to_arrival=bool(n.get("closed_to_arrival")),
                min_stay=int(n.get("min_stay") or 1),
            )
            for n in payload.get("nights") or ()
        ]
        await index.put_nights(uuid.UUID(str(payload["room_type_id"])), uuid.UUID(str(payload["property_id"])), nights)


async def on_index_event(deps: SearchDeps, envelope: EventEnvelope) -> None:
    """A catalog or inventory event for this process's index (also buffered while a rebuild reads)."""
    if deps.rebuilding is not None:
        deps.rebuilding.append(envelope)
    await apply_event(deps.index, envelope)
    INDEX_LAG.set(max(0.0, (datetime.now(UTC) - envelope.occurred_at).total_seconds()))


async def request_rebuild(runtime: Runtime) -> None:
    """Asks every API process to rebuild its in-process index (through the outbox and the bus)."""
    async with runtime.db.unit_of_work() as uow:
        uow.emit(IndexRebuildRequested(requested_at=datetime.now(UTC)))


def schedule_rebuild(deps: SearchDeps) -> None:
    """Rebuilds in the background so the bus handler returns at once. Requests that arrive
    during a rebuild fold into one more rebuild after it (the rows may have changed meanwhile)."""
    if deps.rebuild_task is not None and not deps.rebuild_task.done():
        deps.rebuild_again = True
        return

    async def rebuild_until_settled() -> None:
        while True:
            deps.rebuild_again = False
            try:
                await reindex(deps, rebuild_documents=False)
            except Exception as error:  # the old index keeps serving; the next request retries
                log.warning("requested search rebuild failed", error_type=type(error).__name__, message=str(error))
            if not deps.rebuild_again:
                return

    deps.rebuild_task = asyncio.get_running_loop().create_task(rebuild_until_settled(), name="search-rebuild")


# ---------------------------------------------------------------------------- rebuild


# An index build reads three stages; how far it is shows on /metrics (a 1M-property build takes
# minutes) and in `staybook demo` while it starts.
BUILD_STAGES = ("properties", "room types", "room nights")
BUILD_ROWS = Gauge(
    "staybook_search_build_rows", "Rows read by this process's search index build, by stage", ["stage"],
    multiprocess_mode="liveall",
)  # fmt: skip
BUILD_ROWS_EXPECTED = Gauge(
    "staybook_search_build_rows_expected", "Rows the search index build reads in all, by stage", ["stage"],
    multiprocess_mode="liveall",
)  # fmt: skip


def build_progress() -> list[tuple[str, int, int]]:
    """(stage, rows read, rows to read) of each stage the build under way (or last done) has begun."""
    stages = []
    for stage in BUILD_STAGES:
        expected = REGISTRY.get_sample_value("staybook_search_build_rows_expected", {"stage": stage})
        if expected is not None:
            done = REGISTRY.get_sample_value("staybook_search_build_rows", {"stage": stage}) or 0
            stages.append((stage, int(done), int(expected)))
    return stages


async def load_from_database(runtime: Runtime, index: SearchIndex, progress: Progress | None = None) -> dict[str, int]:
    """Fills an index from what the catalog and inventory services list (their streamed reads),
    on the standby when one is configured and has caught up with the primary."""

    def report(stage: str, done: int, total: int | None) -> None:
        BUILD_ROWS.labels(stage).set(done)
        if total is not None:
            BUILD_ROWS_EXPECTED.labels(stage).set(total)
        if progress is not None:
            progress(stage, done, total)

    for stage in BUILD_STAGES:
        BUILD_ROWS.labels(stage).set(0)
    counts = {"properties": 0, "room_types": 0, "room_nights": 0}
    start, end = index_window(index)
    # Events before this moment are not replayed onto the new index: its rows must include them.
    source = await runtime.db.caught_up_reader()
    total = await catalog.property_count(runtime, source)
    report("properties", 0, total)
    async for batch in catalog.property_listings(runtime, source=source):
        await index.put_properties(
            PropertyRecord(
                property_id=p.property_id,
                name=p.name,
                city=p.city,
                country=p.country,
                latitude=p.latitude,
                longitude=p.longitude,
                currency=p.currency,
                description=p.description,
                amenities=p.amenities,
                property_type=p.property_type,
                rating_tenths=p.rating_tenths,
                active=p.status == "active",
            )
            for p in batch
        )
        counts["properties"] += len(batch)
        report("properties", counts["properties"], total)
    total = await catalog.room_type_count(runtime, source)
    report("room types", 0, total)
    async for batch in catalog.room_type_listings(runtime, source=source):
        await index.put_room_types(
            RoomTypeRecord(r.room_type_id, r.property_id, r.name, r.max_guests, r.status == "active") for r in batch
        )
        counts["room_types"] += len(batch)
        report("room types", counts["room_types"], total)
    total = await inventory.night_count(runtime, start, end, source)
    report("room nights", 0, total)
    async for batch in inventory.night_listings(runtime, start, end, source=source):
        by_room_type: dict[tuple[uuid.UUID, uuid.UUID], list[NightState]] = {}
        for n in batch:
            by_room_type.setdefault((n.room_type_id, n.property_id), []).append(
                NightState(n.night, n.available, n.price, n.closed, n.closed_to_arrival, n.min_stay)
            )
        for (room_type_id, property_id), nights in by_room_type.items():
            await index.put_nights(room_type_id, property_id, nights)
        counts["room_nights"] += len(batch)
        report("room nights", counts["room_nights"], total)
    return counts


async def source_counts(runtime: Runtime) -> dict[str, int]:
    """What a rebuild would read: properties, room types and the room nights of the index window."""
    start, end = bookable_window(runtime)
    return {
        "properties": await catalog.property_count(runtime),
        "room_types": await catalog.room_type_count(runtime),
        "room_nights": await inventory.night_count(runtime, start, end),
    }


def index_window(index: SearchIndex) -> tuple[date, date]:
    availability = index if isinstance(index, MemoryIndex) else index.availability  # type: ignore[attr-defined]
    return availability.origin, availability.origin + timedelta(days=availability.horizon_days)


async def reindex(
    deps: SearchDeps, progress: Progress | None = None, *, rebuild_documents: bool = True
) -> dict[str, int]:
    """Builds a fresh index from the database and swaps it in; the old one serves until the swap.

    `rebuild_documents=False` (process start) lets a Typesense backend keep its shared
    collection when it already holds every property; the in-process part is always rebuilt.
    """
    runtime = deps.runtime
    async with deps.lock:
        fresh = new_index(deps)
        if deps.rebuilding is None:
            deps.rebuilding = []
        try:
            counts = await load_from_database(runtime, fresh, progress)
            await fresh.publish(rebuild=rebuild_documents)
            # Events that arrived while reading may be newer than the rows read: replay them.
            while deps.rebuilding:
                pending, deps.rebuilding = deps.rebuilding, []
                for envelope in pending:
                    await apply_event(fresh, envelope)
            previous = deps.index
            deps.index = fresh
        except BaseException:
            await fresh.close()
            raise
        finally:
            deps.rebuilding = None
        if previous is not None:
            await previous.close()
    # Millions of long-lived index objects would make every full collection rescan them (100+ ms
    # pauses at 1M properties); frozen objects are skipped by the collector.
    gc.collect()
    gc.freeze()
    log.info("search index rebuilt", context={"backend": fresh.backend, **counts})
    return counts


async def build_until_done(deps: SearchDeps) -> None:
    """Retries the first build of the index until the database can be read."""
    while deps.build_error is not None:
        await asyncio.sleep(2)
        try:
            await reindex(deps, rebuild_documents=False)
            deps.build_error = None
        except Exception as error:
            deps.build_error = f"{type(error).__name__}: {error}"


async def ready(deps: SearchDeps) -> None:
    """The index answers everything it should: built from the database, and for Typesense its
    collection holds every document the read model has."""
    error = deps.build_error
    if error is not None:
        raise ServiceUnavailable(f"search index not built yet ({error})")
    await deps.index.check_ready()


# ---------------------------------------------------------------------------- queries


async def search(deps: SearchDeps, query: SearchQuery, cursor: str | None) -> dict[str, Any]:
    """Answers a search as the response document; cached briefly by the normalised query."""
    return orjson.loads(await search_json(deps, query, cursor))


async def search_json(deps: SearchDeps, query: SearchQuery, cursor: str | None) -> bytes:
    """`search` as the JSON bytes the API sends; the cache holds these bytes."""
    fingerprint = query.fingerprint()  # once: the cursor's binding and the cache key
    if cursor:
        query = _with_mark(query, deps.codec.decode(query, cursor, fingerprint))
    ttl = deps.settings.search.cache_seconds
    if ttl <= 0:
        return orjson.dumps(await _answer(deps, query, fingerprint))
    mark = "" if query.after is None else f"{query.after.key}:{query.after.property_id.hex}"
    key = f"{fingerprint}:{mark}"
    cached = deps.responses.get(key)
    if cached is None:
        cached = orjson.dumps(await _answer(deps, query, fingerprint))
        deps.responses.put(key, cached, ttl)
    return cached


def _with_mark(query: SearchQuery, mark: PageMark) -> SearchQuery:
    return replace(query, after=mark)


async def _answer(deps: SearchDeps, query: SearchQuery, fingerprint: str) -> dict[str, Any]:
    ranker = deps.ranker
    if query.audience is not None and query.sort == "relevance" and hasattr(ranker, "for_audience"):
        ranker = await ranker.for_audience(query.audience)
    page = await deps.index.search(query, ranker)
    return page_document(deps.codec, query, page, fingerprint)


def page_document(
    codec: CursorCodec, query: SearchQuery, page: SearchPage, fingerprint: str | None = None
) -> dict[str, Any]:
    items = [
        {
            "property_id": hit.property_id,  # orjson writes UUIDs in their canonical form
            "name": hit.name,
            "city": hit.city,
            "country": hit.country,
            "location": {"lat": hit.latitude, "lon": hit.longitude},
            "distance_km": hit.distance_km,
            "rating": None if hit.rating_tenths is None else hit.rating_tenths / 10,
            "thumbnail_url": hit.thumbnail_url,
            "room_type": {
                "room_type_id": hit.room_type_id,
                "name": hit.room_type_name,
                "max_guests": hit.max_guests,
            },
            "total": {"amount": hit.total, "currency": hit.currency},
            "total_in_currency": {"amount": hit.total_in_currency, "currency": query.currency},
            "nightly_prices": [{"amount": p, "currency": hit.currency} for p in hit.nightly_prices],
        }
        for hit in page.hits
    ]
    next_cursor = None
    if page.has_more and page.hits:
        last = page.hits[-1]
        next_cursor = codec.encode(query, PageMark(last.sort_key, last.property_id), fingerprint)
    return {
        "items": items,
        "next_cursor": next_cursor,
        "total": page.total,
        "currency": query.currency,
        "facets": {"amenities": page.amenity_counts, "price_histogram": page.price_histogram},
    }


async def suggest(deps: SearchDeps, prefix: str, limit: int = 10) -> list[dict[str, Any]]:
    """Place and property names for autocomplete."""
    if not prefix.strip():
        raise InvalidInput("q must not be empty", field="query.q")
    index = deps.index
    return [
        {
            "kind": s.kind,
            "label": s.label,
            "city": s.city,
            "country": s.country,
            "property_id": None if s.property_id is None else str(s.property_id),
        }
        for s in await index.suggest(prefix, limit)
    ]
