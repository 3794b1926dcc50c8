"""The inventory's SQL: the prepared statements of a booking's hold, confirm, release and cancel
(ADR 0012), the calendar's reads and writes, and the streamed night listings read models rebuild
from. The use cases in `service.py` decide; the statements they run are written here, once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from staybook.inventory.models import CalendarFeed, RoomNight
from staybook.kernel.db import Sql, UnitOfWork
from staybook.kernel.orm import as_uuid
from staybook.kernel.runtime import Runtime

# What every statement returns of a night: the fields of a NightSnapshot and an InventoryChanged.
RETURNED = (
    RoomNight.night,
    RoomNight.property_id,
    RoomNight.total,
    RoomNight.held,
    RoomNight.booked,
    RoomNight.price_amount,
    RoomNight.currency,
    RoomNight.min_stay,
    RoomNight.closed,
    RoomNight.closed_to_arrival,
)

NIGHTS = RoomNight.__table__
_RETURNED_COLUMNS = tuple(NIGHTS.c[column.key] for column in RETURNED)

# ------------------------------------------------------------------ a stay's nights (the booking core)


class StayNights(Protocol):
    """What the stay statements bind: `units` rooms of one room type for [check_in, check_out)."""

    room_type_id: uuid.UUID
    check_in: date
    check_out: date
    units: int

    @property
    def night_count(self) -> int: ...


_RETURNING = " RETURNING " + ", ".join(column.name for column in _RETURNED_COLUMNS)
_STAY = " WHERE room_type_id = :room_type_id AND night >= :check_in AND night < :check_out"
_STAY_TYPES = {"check_in": NIGHTS.c.night.type, "check_out": NIGHTS.c.night.type}
# The hold: ONE conditional UPDATE over every night of the stay (service.py's docstring). A
# prepared statement: it is the hottest statement of a booking.
_HOLD = Sql(
    "UPDATE room_nights SET held = held + :units" + _STAY + " AND total - held - booked >= :units AND NOT closed"
    " AND (night <> :check_in OR (NOT closed_to_arrival AND min_stay <= :nights))" + _RETURNING,
    table=NIGHTS,
    types=_STAY_TYPES,
    returns=_RETURNED_COLUMNS,
)
# Confirm, release and cancel: every night of the stay must have the units to move.
_MOVES = {
    reason: Sql(
        f"UPDATE room_nights SET {change}" + _STAY + f" AND {guard}" + _RETURNING,
        table=NIGHTS,
        types=_STAY_TYPES,
        returns=_RETURNED_COLUMNS,
    )
    for reason, change, guard in (
        ("release", "held = held - :units", "held >= :units"),
        ("confirm", "held = held - :units, booked = booked + :units", "held >= :units"),
        ("cancel", "booked = booked - :units", "booked >= :units"),
    )
}
_NIGHTS = Sql(
    "SELECT " + ", ".join(c.name for c in _RETURNED_COLUMNS) + " FROM room_nights" + _STAY,
    table=NIGHTS,
    types=_STAY_TYPES,
    returns=_RETURNED_COLUMNS,
)


def _stay_params(stay: StayNights) -> dict:
    return {
        "room_type_id": stay.room_type_id,
        "check_in": stay.check_in,
        "check_out": stay.check_out,
        "units": stay.units,
        "nights": stay.night_count,
    }


async def hold_nights(uow: UnitOfWork, stay: StayNights) -> list:
    """Adds `stay.units` to `held` on every night of the stay that has them free and is open for
    it; returns the nights it changed (fewer than the stay's: the caller refuses the hold)."""
    return await uow.fetch(_HOLD, _stay_params(stay))


async def move_nights(uow: UnitOfWork, stay: StayNights, move: str) -> list:
    """Moves the stay's units (`release`, `confirm` or `cancel`) on every night that has them; returns
    the nights it changed."""
    return await uow.fetch(_MOVES[move], _stay_params(stay))


async def stay_nights(uow: UnitOfWork, stay: StayNights) -> dict[date, object]:
    """The stay's existing nights by date (to explain a refused hold)."""
    return {row.night: row for row in await uow.fetch(_NIGHTS, _stay_params(stay))}


# ------------------------------------------------------------------ calendars


async def existing_nights(session, room_type_id: uuid.UUID, start: date, end: date) -> set[date]:
    """The nights in [start, end) the room type has rows for."""
    query = select(RoomNight.night).where(
        RoomNight.room_type_id == room_type_id, RoomNight.night >= start, RoomNight.night < end
    )
    return set((await session.scalars(query)).all())


async def insert_nights(session, rows: list[dict]) -> None:
    await session.execute(insert(RoomNight), rows)


async def calendar_rows(session, room_type_id: uuid.UUID, start: date, end: date) -> list:
    """One room type's nights in [start, end), in night order (nights without rows are absent)."""
    query = (
        select(*RETURNED)
        .where(RoomNight.room_type_id == room_type_id, RoomNight.night >= start, RoomNight.night < end)
        .order_by(RoomNight.night)
    )
    return list((await session.execute(query)).all())


_PROPERTY_NIGHTS = Sql(
    "SELECT room_type_id, " + ", ".join(c.name for c in _RETURNED_COLUMNS) + " FROM room_nights"
    " WHERE property_id = :property_id AND night >= :start AND night < :end ORDER BY room_type_id, night",
    table=NIGHTS,
    types={"start": NIGHTS.c.night.type, "end": NIGHTS.c.night.type},
    returns=(NIGHTS.c.room_type_id, *_RETURNED_COLUMNS),
)


async def property_calendar_rows(uow: UnitOfWork, property_id: uuid.UUID, start: date, end: date) -> list:
    """Every room type's nights of a property in [start, end), by room type then night (availability),
    as one prepared statement."""
    return await uow.fetch(_PROPERTY_NIGHTS, {"property_id": property_id, "start": start, "end": end})


async def update_nights(
    session, room_type_id: uuid.UUID, start: date, end: date, values: dict, *, prices: dict[date, int] | None = None
) -> list:
    """ONE UPDATE of `values` (column -> value) on every night in [start, end); `prices` (night ->
    amount) becomes a CASE over the night. Returns the changed nights."""
    if prices:
        values = {**values, "price_amount": case(prices, value=RoomNight.night, else_=RoomNight.price_amount)}
    statement = (
        update(RoomNight)
        .where(RoomNight.room_type_id == room_type_id, RoomNight.night >= start, RoomNight.night < end)
        .values(**values)
        .returning(*RETURNED)
        .execution_options(synchronize_session=False)
    )
    return list((await session.execute(statement)).all())


async def nights_above(session, room_type_id: uuid.UUID, start: date, end: date, units: int) -> list:
    """The nights in [start, end) where more than `units` are held + booked (night, held, booked)."""
    query = (
        select(RoomNight.night, RoomNight.held, RoomNight.booked)
        .where(
            RoomNight.room_type_id == room_type_id,
            RoomNight.night >= start,
            RoomNight.night < end,
            RoomNight.held + RoomNight.booked > units,
        )
        .order_by(RoomNight.night)
    )
    return list((await session.execute(query)).all())


async def close_listed_nights(session, room_type_id: uuid.UUID, nights: Sequence[date]) -> list:
    """Closes the listed nights in one UPDATE; returns those that exist."""
    statement = (
        update(RoomNight)
        .where(RoomNight.room_type_id == room_type_id, RoomNight.night.in_(sorted(set(nights))))
        .values(closed=True)
        .returning(*RETURNED)
        .execution_options(synchronize_session=False)
    )
    return list((await session.execute(statement)).all())


async def last_nights(session, room_type_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, date]:
    """The last night each of the room types has a row for (room types without nights are absent)."""
    query = (
        select(RoomNight.room_type_id, func.max(RoomNight.night))
        .where(RoomNight.room_type_id.in_(room_type_ids))
        .group_by(RoomNight.room_type_id)
    )
    return dict((await session.execute(query)).all())


# 11 columns a row: stays under the 32,767 bind parameters asyncpg and SQLite allow per statement.
_INSERT_CHUNK = 2000


async def insert_missing_nights(session, rows: list[dict]) -> list:
    """Inserts the rows whose night does not exist yet (ON CONFLICT DO NOTHING, so two workers may
    run at once); returns the inserted nights with their room type."""
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    inserted = []
    for start in range(0, len(rows), _INSERT_CHUNK):
        statement = (
            dialect_insert(RoomNight)
            .values(rows[start : start + _INSERT_CHUNK])
            .on_conflict_do_nothing(index_elements=["room_type_id", "night"])
            .returning(RoomNight.room_type_id, *RETURNED)
        )
        inserted.extend((await session.execute(statement)).all())
    return inserted


# ------------------------------------------------------------------ calendar feeds


async def feed_version(session, room_type_id: uuid.UUID) -> int:
    return await session.scalar(select(CalendarFeed.version).where(CalendarFeed.room_type_id == room_type_id)) or 0


# ------------------------------------------------------------------ what read models rebuild from


@dataclass(frozen=True, slots=True)
class NightListing:
    """One room type's night as read models (search) keep it."""

    room_type_id: uuid.UUID
    property_id: uuid.UUID
    night: date
    available: int
    price: int
    closed: bool
    closed_to_arrival: bool
    min_stay: int


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


async def night_count(runtime: Runtime, start: date, end: date, source: AsyncEngine | None = None) -> int:
    """Room nights from `start` up to (not including) `end`, every room type."""
    query = select(func.count()).select_from(RoomNight).where(RoomNight.night >= start, RoomNight.night < end)
    async with (source or runtime.db.engine).connect() as conn:
        return int(await conn.scalar(query) or 0)


async def night_listings(
    runtime: Runtime, start: date, end: date, *, batch_size: int = 20_000, source: AsyncEngine | None = None
) -> AsyncIterator[list[NightListing]]:
    """Every room type's nights from `start` up to `end`, ordered by room type then night, in
    batches streamed from one read of `source` (default the primary), for rebuilding read models."""
    query = (
        select(
            RoomNight.room_type_id,
            RoomNight.property_id,
            RoomNight.night,
            (RoomNight.total - RoomNight.held - RoomNight.booked).label("available"),
            RoomNight.price_amount,
            RoomNight.closed,
            RoomNight.closed_to_arrival,
            RoomNight.min_stay,
        )
        .where(RoomNight.night >= start, RoomNight.night < end)
        .order_by(RoomNight.room_type_id, RoomNight.night)
        .execution_options(yield_per=batch_size)
    )
    async with (source or runtime.db.engine).connect() as conn:
        rows = await conn.stream(query)
        async for batch in rows.partitions(batch_size):
            yield [
                NightListing(
                    as_uuid(r.room_type_id),
                    as_uuid(r.property_id),
                    _as_date(r.night),
                    int(r.available),
                    int(r.price_amount),
                    bool(r.closed),
                    bool(r.closed_to_arrival),
                    int(r.min_stay),
                )
                for r in batch
            ]
