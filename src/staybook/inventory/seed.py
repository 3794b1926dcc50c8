"""Demo calendars: a year of nights per room type with seasonal prices, opened in bulk (COPY, or on
PostgreSQL one INSERT ... SELECT per batch of room types into a table swapped in with its indexes)."""

from __future__ import annotations

import asyncio
import functools
import math
import time
import uuid
from collections.abc import Sequence
from datetime import date, timedelta
from itertools import repeat

from sqlalchemy import select

from staybook.catalog import facts as catalog
from staybook.inventory.models import RoomNight
from staybook.kernel.bulk import copy_records
from staybook.kernel.runtime import Runtime

# ------------------------------------------------------------------ demo data

_COLUMNS = (
    "room_type_id",
    "night",
    "property_id",
    "total",
    "held",
    "booked",
    "price_amount",
    "currency",
    "min_stay",
    "closed",
    "closed_to_arrival",
)


@functools.cache
def seasonal_factors(start: date, days: int, southern: bool) -> tuple[tuple[date, float], ...]:
    """Price factor per night: +-25% over the year peaking mid-July (mid-January south of the
    equator), and Friday/Saturday nights +15%."""
    peak = 15 if southern else 196
    factors = []
    for offset in range(days):
        night = start + timedelta(days=offset)
        season = 1 + 0.25 * math.cos(2 * math.pi * (night.timetuple().tm_yday - peak) / 365.25)
        factors.append((night, season * (1.15 if night.weekday() in (4, 5) else 1.0)))
    return tuple(factors)


@functools.lru_cache(maxsize=4096)
def _seasonal_prices(base: int, start: date, days: int, southern: bool) -> tuple[int, ...]:
    # Round to hundreds of minor units (whole euros, hundreds of yen) when the price allows it.
    digits = -2 if base >= 1000 else 0
    return tuple(int(round(base * factor, digits)) for _, factor in seasonal_factors(start, days, southern))


@functools.cache
def _nights_from(start: date, days: int) -> tuple[date, ...]:
    return tuple(start + timedelta(days=offset) for offset in range(days))


def demo_calendar(summary: catalog.RoomTypeSummary, start: date, days: int) -> list[tuple]:
    """Room-night records (in `_COLUMNS` order) for one room type, priced with the seasonal shape.

    Built with zip/repeat and cached price rows: at 100K properties this runs for ~90M rows,
    where a per-row Python expression is the bottleneck.
    """
    southern = summary.latitude < 0
    return list(
        zip(
            repeat(summary.room_type_id),
            _nights_from(start, days),
            repeat(summary.property_id),
            repeat(summary.units),
            repeat(0),
            repeat(0),
            _seasonal_prices(summary.base_price_amount, start, days, southern),
            repeat(summary.currency),
            repeat(1),
            repeat(False),
            repeat(False),
            strict=False,
        )
    )


async def copy_room_nights(session, records: list[tuple], table: str = "room_nights") -> None:
    """Room nights in `_COLUMNS` order through the kernel's bulk copy."""
    await copy_records(session, table, _COLUMNS, records, sqlite_row=_sqlite_night)


def _sqlite_night(r: tuple) -> tuple:
    # SQLite's storage forms, as the Uuid/Date/Boolean column types write them.
    return (r[0].hex, r[1].isoformat(), r[2].hex, r[3], r[4], r[5], r[6], r[7], r[8], int(r[9]), int(r[10]))


# Room types per calendar-opening statement (x horizon nights: ~730K rows and one transaction each).
SEED_ROOM_TYPES_PER_STATEMENT = 2000

# PostgreSQL builds the nights itself: one compact parameter row per room type (arrays, a few
# hundred KB per statement) times generate_series over the horizon, priced by joining the
# seasonal shape computed once in Python (`seasonal_factors`). Room types that already have
# nights are skipped inside the statement, so a seed can be re-run or resumed.
_OPEN_CALENDARS_SQL = """
WITH fresh AS (
    SELECT p.*
    FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::int[], $5::text[], $6::date[], $7::bool[])
        AS p(room_type_id, property_id, units, base, currency, first_night, southern)
    WHERE NOT EXISTS (SELECT 1 FROM room_nights r WHERE r.room_type_id = p.room_type_id)
), shape AS (
    SELECT * FROM unnest($8::date[], $9::bool[], $10::float8[]) AS s(night, southern, factor)
)
INSERT INTO room_nights (room_type_id, night, property_id, total, held, booked, price_amount, currency,
                         min_stay, closed, closed_to_arrival)
SELECT f.room_type_id, f.first_night + d.n, f.property_id, f.units, 0, 0,
       round((f.base * s.factor)::numeric, CASE WHEN f.base >= 1000 THEN -2 ELSE 0 END)::int,
       f.currency, 1, false, false
FROM fresh f
CROSS JOIN generate_series(0, $11::int - 1) AS d(n)
JOIN shape s ON s.night = f.first_night + d.n AND s.southern = f.southern
"""


def _open_calendars_arguments(batch: Sequence[catalog.CalendarSeed], horizon: int) -> tuple:
    firsts = [catalog.today_in(seed.timezone) for seed in batch]
    southern = [seed.latitude < 0 for seed in batch]
    start, end = min(firsts), max(firsts) + timedelta(days=horizon)
    shape = [
        (night, hemisphere, factor)
        for hemisphere in (False, True)
        for night, factor in seasonal_factors(start, (end - start).days, hemisphere)
    ]
    return (
        [seed.room_type_id for seed in batch],
        [seed.property_id for seed in batch],
        [seed.units for seed in batch],
        [seed.base_price_amount for seed in batch],
        [seed.currency for seed in batch],
        firsts,
        southern,
        [night for night, _, _ in shape],
        [hemisphere for _, hemisphere, _ in shape],
        [factor for _, _, factor in shape],
        horizon,
    )


async def _seed_calendars_in_postgres(runtime: Runtime, horizon: int, on_batch, phases: dict) -> tuple[int, int]:
    """Opens calendars with INSERT ... SELECT on `inventory.seed_connections` connections at once,
    one transaction per statement; returns (room types opened, nights added).

    Into an empty `room_nights` (a fresh install) the nights go first into a twin table without
    indexes, whose primary key and index are then built in one sorted pass each (in parallel)
    before the twin replaces the empty table in one short transaction: per-row index upkeep is
    most of the cost of a bulk insert. Otherwise they go straight into `room_nights`.
    """
    async with runtime.db.engine.connect() as connection:
        raw = (await connection.get_raw_connection()).driver_connection
        # Only a fresh table without grants of its own is swapped: privileges would not carry over.
        empty = await raw.fetchval(
            "SELECT NOT EXISTS (SELECT 1 FROM room_nights)"
            " AND (SELECT relacl IS NULL FROM pg_class WHERE oid = 'room_nights'::regclass)"
        )
        if empty:
            await raw.execute(f"DROP TABLE IF EXISTS {_SEED_TABLE}")
            # Same columns, defaults, NOT NULLs and CHECK constraints (checked on every row loaded).
            await raw.execute(f"CREATE TABLE {_SEED_TABLE} (LIKE room_nights INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    target = _SEED_TABLE if empty else "room_nights"
    try:
        started = time.perf_counter()
        opened = await _open_calendars_in_parallel(runtime, horizon, target, on_batch)
        phases["load"] = round(time.perf_counter() - started, 3)
        if empty:
            started = time.perf_counter()
            on_batch(0, "inventory: building the calendar's keys")
            await _index_and_swap_in(runtime)
            phases["index_and_swap"] = round(time.perf_counter() - started, 3)
    finally:
        if empty:
            async with runtime.db.engine.connect() as connection:
                raw = (await connection.get_raw_connection()).driver_connection
                await raw.execute(f"DROP TABLE IF EXISTS {_SEED_TABLE}")
    return opened


_SEED_TABLE = "room_nights_seeding"
# Per index build; two builds run at once.
SEED_INDEX_MEMORY = "512MB"


async def _open_calendars_in_parallel(runtime: Runtime, horizon: int, target: str, on_batch) -> tuple[int, int]:
    jobs = runtime.settings.inventory.seed_connections
    batches: asyncio.Queue = asyncio.Queue(maxsize=jobs * 2)
    opened = [0, 0]
    statement = _OPEN_CALENDARS_SQL.replace("INSERT INTO room_nights", f"INSERT INTO {target}")

    async def read_room_types() -> None:
        after = None
        try:
            while True:
                async with runtime.db.session() as session:
                    batch = await catalog.calendar_seeds(session, after=after, limit=SEED_ROOM_TYPES_PER_STATEMENT)
                if not batch:
                    return
                after = batch[-1].room_type_id
                await batches.put(batch)
        finally:
            for _ in range(jobs):
                await batches.put(None)

    async def open_calendars() -> None:
        async with runtime.db.engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            while (batch := await batches.get()) is not None:
                async with raw.transaction():
                    # A lost batch is re-done by the next seed (it skips opened room types); no need to
                    # wait for each commit's WAL flush. For this transaction only: behind a transaction
                    # pool a session-level SET would stay on a server connection other clients get.
                    await raw.execute("SET LOCAL synchronous_commit = off")
                    status = await raw.execute(statement, *_open_calendars_arguments(batch, horizon))
                nights = int(status.rsplit(" ", 1)[1])
                opened[0] += nights // horizon
                opened[1] += nights
                on_batch(len(batch))

    await asyncio.gather(read_room_types(), *(open_calendars() for _ in range(jobs)))
    return opened[0], opened[1]


async def _index_and_swap_in(runtime: Runtime) -> None:
    """Builds the twin's primary key and indexes (one connection each, at once), then replaces the
    empty `room_nights` with it under the names the migrations gave, in one transaction. Nights
    written meanwhile by the API (a room type created during the seed) are carried over."""
    table = RoomNight.__table__
    primary_key = table.primary_key.name
    indexes = [
        (
            f"CREATE UNIQUE INDEX {_SEED_TABLE}_pk ON {_SEED_TABLE} "
            f"({', '.join(c.name for c in table.primary_key.columns)})"
        ),
        *(
            f"CREATE {'UNIQUE ' if index.unique else ''}INDEX {_SEED_TABLE}_{index.name} ON {_SEED_TABLE} "
            f"({', '.join(c.name for c in index.columns)})"
            for index in table.indexes
        ),
    ]

    async def build(ddl: str) -> None:
        async with runtime.db.engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            # Sort in memory rather than in temporary files (this transaction only, as above).
            async with raw.transaction():
                await raw.execute(f"SET LOCAL maintenance_work_mem = '{SEED_INDEX_MEMORY}'")
                await raw.execute(ddl)

    await asyncio.gather(*(build(ddl) for ddl in indexes))
    columns = ", ".join(c.name for c in table.columns)
    carried = ", ".join(f"{c.name} = EXCLUDED.{c.name}" for c in table.columns if not c.primary_key)
    async with runtime.db.engine.connect() as connection:
        raw = (await connection.get_raw_connection()).driver_connection
        async with raw.transaction():
            await raw.execute("LOCK TABLE room_nights IN ACCESS EXCLUSIVE MODE")
            await raw.execute(
                f"INSERT INTO {_SEED_TABLE} ({columns}) SELECT {columns} FROM room_nights "
                f"ON CONFLICT ({', '.join(c.name for c in table.primary_key.columns)}) DO UPDATE SET {carried}"
            )
            await raw.execute("DROP TABLE room_nights")
            await raw.execute(
                f"ALTER TABLE {_SEED_TABLE} ADD CONSTRAINT {primary_key} PRIMARY KEY USING INDEX {_SEED_TABLE}_pk"
            )
            await raw.execute(f"ALTER TABLE {_SEED_TABLE} RENAME TO room_nights")
            for index in table.indexes:
                await raw.execute(f"ALTER INDEX {_SEED_TABLE}_{index.name} RENAME TO {index.name}")


async def _seed_calendars_with_copy(runtime: Runtime, horizon: int, on_batch, phases: dict) -> tuple[int, int]:
    """Portable path (SQLite, the demo): nights built in Python and bulk-inserted per batch."""
    nights_added = room_types_opened = 0
    after: uuid.UUID | None = None
    while True:
        async with runtime.db.unit_of_work() as uow:
            batch = await catalog.active_room_types(uow.session, after=after, limit=2000)
            if not batch:
                break
            after = batch[-1].room_type_id
            opened = set(
                (
                    await uow.session.scalars(
                        select(RoomNight.room_type_id)
                        .where(RoomNight.room_type_id.in_([s.room_type_id for s in batch]))
                        .distinct()
                    )
                ).all()
            )
            records = [
                record
                for summary in batch
                if summary.room_type_id not in opened
                for record in demo_calendar(summary, summary.today(), horizon)
            ]
            await copy_room_nights(uow.session, records)
        nights_added += len(records)
        room_types_opened += len(batch) - len(opened)
        on_batch(len(batch))
    return room_types_opened, nights_added


async def seed_demo(runtime: Runtime, *, properties: int, seed: int) -> dict:
    """Opens the calendar of every room type that has none yet, for the horizon, in bulk.

    On PostgreSQL the database generates the nights (INSERT ... SELECT over generate_series,
    several connections at once); elsewhere they are built here and bulk-inserted.
    No inventory.changed per room type or night: a fresh calendar is fully open at the seeded
    prices, and read models build from `nights()` or the next change (docs/adr/0008).
    """
    from rich.progress import Progress

    horizon = runtime.settings.inventory.horizon_days
    phases: dict[str, float] = {}
    seeder = (
        _seed_calendars_in_postgres if runtime.db.engine.dialect.name == "postgresql" else _seed_calendars_with_copy
    )
    with Progress(transient=True) as progress:
        task = progress.add_task("inventory: calendars (room types)", total=None)
        room_types_opened, nights_added = await seeder(
            runtime,
            horizon,
            lambda room_types, phase=None: progress.update(task, advance=room_types, description=phase),
            phases,
        )
    return {"room_types": room_types_opened, "room_nights": nights_added, "seconds": phases}
