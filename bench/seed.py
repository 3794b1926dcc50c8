"""Seeding throughput: `seed_demo` of catalog + inventory on PostgreSQL vs a raw COPY of the same rows.

The ceiling is PostgreSQL ingesting the very room-night rows the seeder wrote, as a binary COPY
into a clone of `room_nights` (same primary key, index and CHECK constraints), in the same run;
beside it the same rows inserted server-side (INSERT ... SELECT into the clone). Both ceilings
copy a sample of `--ceiling-rows` rows (they are rates; copying all 91M rows of a 100K seed
would take longer than the seed). The seeder may beat them: it builds its indexes after loading.

    flock /tmp/staybook-bench.lock .venv/bin/python -m bench.seed --properties 100000
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
from staybook.catalog import seed as catalog_seed
from staybook.inventory import seed as inventory_seed
from staybook.kernel.runtime import Runtime
from staybook.kernel.settings import Settings

ADMIN_URL = os.environ.get("STAYBOOK_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASE = "staybook_bench_seed"


def fresh_database() -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + DATABASE


async def run(settings: Settings, properties: int, ceiling_rows: int) -> dict:
    runtime = Runtime(settings, collect_wiring())
    await runtime.start()
    try:
        started = time.perf_counter()
        seeded = await catalog_seed.seed_demo(runtime, properties=properties, seed=7)
        catalog_seconds = time.perf_counter() - started
        started = time.perf_counter()
        calendars = await inventory_seed.seed_demo(runtime, properties=properties, seed=7)
        inventory_seconds = time.perf_counter() - started
        async with runtime.db.engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            sample = f"SELECT * FROM room_nights ORDER BY room_type_id, night LIMIT {ceiling_rows}"
            await raw.execute("CREATE TABLE bench_room_nights (LIKE room_nights INCLUDING ALL)")
            dump = io.BytesIO()
            await raw.copy_from_query(sample, output=dump, format="binary")
            dump.seek(0)
            started = time.perf_counter()
            copy_status = await raw.copy_to_table("bench_room_nights", source=dump, format="binary")
            copy_seconds = time.perf_counter() - started
            copied = int(copy_status.rsplit(" ", 1)[1])
            await raw.execute("TRUNCATE bench_room_nights")
            # The database's own ceiling: the same rows inserted server-side, no client in the loop.
            await raw.execute(f"CREATE TEMP TABLE bench_sample AS {sample}")
            started = time.perf_counter()
            await raw.execute("INSERT INTO bench_room_nights SELECT * FROM bench_sample")
            insert_select_seconds = time.perf_counter() - started
            await raw.execute("DROP TABLE bench_room_nights, bench_sample")
    finally:
        await runtime.close()
    nights = calendars["room_nights"]
    total_seconds = catalog_seconds + inventory_seconds
    copy_rate = copied / copy_seconds
    return {
        "properties": properties,
        "room_types": seeded["room_types"],
        "room_nights": nights,
        "seed_connections": settings.inventory.seed_connections,
        "ceiling_sample_rows": copied,
        "seconds": {
            "catalog": round(catalog_seconds, 3),
            "inventory": round(inventory_seconds, 3),
            "total": round(total_seconds, 3),
            "raw_copy_sample": round(copy_seconds, 3),
            "insert_select_sample": round(insert_select_seconds, 3),
            "inventory_phases": calendars.get("seconds", {}),
        },
        "properties_per_second": round(properties / total_seconds, 1),
        "room_nights_per_second": round(nights / inventory_seconds, 1),
        "raw_copy_room_nights_per_second": round(copy_rate, 1),
        "insert_select_room_nights_per_second": round(copied / insert_select_seconds, 1),
        "ratio_to_ceiling": ratio(nights / inventory_seconds, copy_rate),
        "projected_seconds_for_100k_properties": round(total_seconds * 100_000 / properties, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--properties", type=int, default=2000)
    parser.add_argument("--ceiling-rows", type=int, default=3_000_000, help="room-nights the ceilings copy (rates)")
    parser.add_argument("--seed-connections", type=int, default=None, help="default: the inventory setting")
    args = parser.parse_args()
    settings = Settings(database_url=fresh_database(), environment="test", log_json=False, log_level="WARNING")
    if args.seed_connections:
        settings.inventory.seed_connections = args.seed_connections
    migrate.upgrade(settings)
    result = asyncio.run(run(settings, args.properties, args.ceiling_rows))
    print(
        f"seeded {result['properties']} properties, {result['room_types']} room types, "
        f"{result['room_nights']} room-nights\n"
        f"  properties/s (catalog + inventory): {result['properties_per_second']}\n"
        f"  room-nights/s seeder:               {result['room_nights_per_second']}\n"
        f"  room-nights/s raw COPY (ceiling):   {result['raw_copy_room_nights_per_second']}\n"
        f"  room-nights/s INSERT ... SELECT:    {result['insert_select_room_nights_per_second']}\n"
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
