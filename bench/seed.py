"""Seeding throughput: `seed_demo` of catalog + inventory on PostgreSQL vs a raw COPY of the same rows.

The ceiling is PostgreSQL ingesting the very room-night rows the seeder wrote, as a binary COPY
into a clone of `room_nights` (same primary key, index and CHECK constraints), in the same run:
what is left between the two is the seeder's own work (generating rows, encoding, events).

    .venv/bin/python -m bench.seed [--properties 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import time

import psycopg

from bench.harness import ratio, write_result
from staybook import migrate
from staybook.app import collect_wiring
from staybook.catalog import service as catalog
from staybook.inventory import service as inventory
from staybook.kernel.runtime import Runtime
from staybook.kernel.settings import Settings

ADMIN_URL = os.environ.get("STAYBOOK_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASE = "staybook_bench_seed"


def fresh_database() -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + DATABASE


async def run(settings: Settings, properties: int) -> dict:
    runtime = Runtime(settings, collect_wiring())
    await runtime.start()
    try:
        started = time.perf_counter()
        seeded = await catalog.seed_demo(runtime, properties=properties, seed=7)
        catalog_seconds = time.perf_counter() - started
        started = time.perf_counter()
        calendars = await inventory.seed_demo(runtime, properties=properties, seed=7)
        inventory_seconds = time.perf_counter() - started
        async with runtime.db.engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            await raw.execute("CREATE TABLE bench_room_nights (LIKE room_nights INCLUDING ALL)")
            dump = io.BytesIO()
            await raw.copy_from_query("SELECT * FROM room_nights", output=dump, format="binary")
            dump.seek(0)
            started = time.perf_counter()
            await raw.copy_to_table("bench_room_nights", source=dump, format="binary")
            copy_seconds = time.perf_counter() - started
            await raw.execute("DROP TABLE bench_room_nights")
    finally:
        await runtime.close()
    nights = calendars["room_nights"]
    total_seconds = catalog_seconds + inventory_seconds
    return {
        "properties": properties,
        "room_types": seeded["room_types"],
        "room_nights": nights,
        "seconds": {
            "catalog": round(catalog_seconds, 3),
            "inventory": round(inventory_seconds, 3),
            "raw_copy": round(copy_seconds, 3),
        },
        "properties_per_second": round(properties / total_seconds, 1),
        "room_nights_per_second": round(nights / inventory_seconds, 1),
        "raw_copy_room_nights_per_second": round(nights / copy_seconds, 1),
        "ratio_to_ceiling": ratio(nights / inventory_seconds, nights / copy_seconds),
        "projected_seconds_for_100k_properties": round(total_seconds * 100_000 / properties, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--properties", type=int, default=2000)
    args = parser.parse_args()
    settings = Settings(database_url=fresh_database(), environment="test", log_json=False, log_level="WARNING")
    migrate.upgrade(settings)
    result = asyncio.run(run(settings, args.properties))
    print(
        f"seeded {result['properties']} properties, {result['room_types']} room types, "
        f"{result['room_nights']} room-nights\n"
        f"  properties/s (catalog + inventory): {result['properties_per_second']}\n"
        f"  room-nights/s seeder:               {result['room_nights_per_second']}\n"
        f"  room-nights/s raw COPY (ceiling):   {result['raw_copy_room_nights_per_second']}\n"
        f"  ratio to ceiling:                   {result['ratio_to_ceiling']}\n"
        f"  100K properties projected:          {result['projected_seconds_for_100k_properties']} s"
    )
    path = write_result(
        "seed",
        {
            "what": "catalog.seed_demo + inventory.seed_demo on PostgreSQL (COPY), properties/s and room-nights/s",
            "ceiling": "binary COPY of the same room_nights rows into a clone table with the same indexes, same run",
            "results": result,
            "ratio_to_ceiling": result["ratio_to_ceiling"],
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
