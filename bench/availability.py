"""Availability quotes over HTTP: GET /properties/{id}/availability for a 3-night stay, cached and uncached.

One uvicorn worker (uvloop + httptools) pinned to CPU 0 serves PostgreSQL + Redis; the load
generator runs on CPU 1. Closed loop gives saturation throughput; open loop at a fixed rate gives
latency from the scheduled send time. "Cached" cycles over a set of stays the cache already holds
(the hit rate over the measured runs comes from the server's `staybook_cache_requests_total`);
"uncached" runs with STAYBOOK_INVENTORY__AVAILABILITY_CACHE_SECONDS=0, database reads every time. The ceiling is a
bare ASGI app on the same uvicorn, same run.

    .venv/bin/python -m bench.availability [--properties 300] [--duration 10] [--rate-cached 100] [--rate-uncached 25]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import uuid
from datetime import date, timedelta

import httpx
import psycopg

from bench.harness import Server, load, print_table, ratio, uvicorn_command, write_result
from staybook import migrate
from staybook.app import collect_wiring
from staybook.catalog import seed as catalog_seed
from staybook.inventory import seed as inventory_seed
from staybook.kernel.runtime import Runtime
from staybook.kernel.settings import Settings

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "staybook_bench_availability"
REDIS_URL = "redis://127.0.0.1:6379/0"


def fresh_database() -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + DATABASE


async def seed(settings: Settings, properties: int) -> list[str]:
    runtime = Runtime(settings, collect_wiring())
    await runtime.start()
    try:
        await catalog_seed.seed_demo(runtime, properties=properties, seed=11)
        await inventory_seed.seed_demo(runtime, properties=properties, seed=11)
        async with runtime.db.engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            return [str(row["id"]) for row in await raw.fetch("SELECT id FROM properties ORDER BY id")]
    finally:
        await runtime.close()


def stays(property_ids: list[str], count: int) -> list[dict]:
    rng = random.Random(3)
    first = date.today() + timedelta(days=7)
    requests = []
    for _ in range(count):
        check_in = first + timedelta(days=rng.randrange(0, 120))
        requests.append(
            {
                "method": "GET",
                "path": f"/api/v1/properties/{rng.choice(property_ids)}/availability"
                f"?check_in={check_in}&check_out={check_in + timedelta(days=3)}&guests=2",
            }
        )
    return requests


def availability_hit_rate(url: str) -> dict:
    text = httpx.get(url + "/metrics", timeout=10).text
    counts = {"hit": 0.0, "miss": 0.0}
    for result in counts:
        match = re.search(
            rf'staybook_cache_requests_total\{{namespace="availability",result="{result}"\}} ([0-9.e+]+)', text
        )
        counts[result] = float(match.group(1)) if match else 0.0
    total = counts["hit"] + counts["miss"]
    return {**counts, "hit_rate": round(counts["hit"] / total, 4) if total else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--properties", type=int, default=300)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--rate-cached", type=float, default=100, help="open-loop arrival rate, requests/s")
    parser.add_argument("--rate-uncached", type=float, default=25, help="open-loop arrival rate, requests/s")
    parser.add_argument("--distinct-stays", type=int, default=500)
    args = parser.parse_args()
    settings = Settings(database_url=fresh_database(), environment="test", log_json=False, log_level="WARNING")
    migrate.upgrade(settings)
    property_ids = asyncio.run(seed(settings, args.properties))
    requests = stays(property_ids, args.distinct_stays)
    base_env = {
        "STAYBOOK_DATABASE_URL": settings.database_url,
        "STAYBOOK_REDIS_URL": REDIS_URL,
        "STAYBOOK_REDIS_KEY_PREFIX": f"bench{uuid.uuid4().hex[:8]}:",
        "STAYBOOK_LOG_LEVEL": "WARNING",
    }
    cases = {
        "cached": {**base_env, "STAYBOOK_INVENTORY__AVAILABILITY_CACHE_SECONDS": "3600"},
        "uncached": {**base_env, "STAYBOOK_INVENTORY__AVAILABILITY_CACHE_SECONDS": "0"},
    }
    rates = {"cached": args.rate_cached, "uncached": args.rate_uncached}
    figures: dict = {}
    rows = []
    with Server(uvicorn_command("bench.bare_asgi:app", factory=False), cpu=0) as server:
        load(server.url, path="/", rate=0, duration=2, cpu=1)
        ceiling = load(server.url, path="/", rate=0, duration=args.duration, connections=32, cpu=1)
    rows.append(("bare ASGI (closed loop)", ceiling))
    for label, env in cases.items():
        with Server(uvicorn_command("staybook.app:create_app"), env=env, cpu=0) as server:
            # Warm-up: every distinct stay once, so the cached case starts with a full cache.
            with httpx.Client(base_url=server.url, timeout=30) as client:
                for request in requests:
                    client.get(request["path"]).raise_for_status()
            before = availability_hit_rate(server.url)
            saturated = load(server.url, requests=requests, rate=0, duration=args.duration, connections=32, cpu=1)
            paced = load(
                server.url, requests=requests, rate=rates[label], duration=args.duration, connections=64, cpu=1
            )
            after = availability_hit_rate(server.url)
            hits, misses = after["hit"] - before["hit"], after["miss"] - before["miss"]
            cache = {
                "hit": hits,
                "miss": misses,
                "hit_rate": round(hits / (hits + misses), 4) if hits + misses else 0.0,
            }
        figures[label] = {"closed_loop": saturated, "open_loop": paced, "availability_cache": cache}
        rows += [(f"{label} (closed loop)", saturated), (f"{label} @ {rates[label]:.0f}/s", paced)]
    print_table(rows)
    for label in cases:
        cache = figures[label]["availability_cache"]
        print(
            f"{label}: availability cache hits {cache['hit']:.0f}, misses {cache['miss']:.0f}, rate {cache['hit_rate']}"
        )
    ratios = {
        label: ratio(figures[label]["closed_loop"]["throughput_rps"], ceiling["throughput_rps"]) for label in cases
    }
    print(f"ratio to bare ASGI: {ratios}")
    path = write_result(
        "availability",
        {
            "what": "GET /api/v1/properties/{id}/availability, 3-night stays, PostgreSQL + Redis, 1 uvicorn worker",
            "ceiling": "bare ASGI app on the same uvicorn, closed loop, same run",
            "properties": args.properties,
            "distinct_stays": args.distinct_stays,
            "open_loop_rates": rates,
            "machine_load_note": "shared 2-core machine; other benchmarks and test suites ran at the same time",
            "ceiling_result": ceiling,
            "results": figures,
            "ratio_to_ceiling": ratios,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
