"""Use cases of the inventory context: calendars, and the hold/confirm/release moves of room-nights.

The booking core lives here. A hold is ONE conditional UPDATE over every night of
the stay, accepted only if it touched every night:

    UPDATE room_nights SET held = held + :units
    WHERE room_type_id = :rt AND night >= :check_in AND night < :check_out
      AND total - held - booked >= :units AND NOT closed
      AND (night <> :check_in OR (NOT closed_to_arrival AND min_stay <= :nights))
    RETURNING ...

On PostgreSQL (READ COMMITTED) a concurrent writer of the same row waits for the
first to commit and re-checks the WHERE clause against the new row, so two holds
can never both take the last unit; rows are locked in index order, so holds over
overlapping ranges do not deadlock. On SQLite the single writer serialises the
statement. The CHECK constraint `held + booked <= total` backs it all up.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import and_, insert, or_, select, update

from staybook.inventory.events import InventoryChanged, NightSnapshot
from staybook.inventory.models import RoomNight
from staybook.kernel.db import UnitOfWork
from staybook.kernel.errors import Conflict, InvalidInput

_RETURNED = (
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


@dataclass(frozen=True)
class Stay:
    """`units` rooms of one room type for the nights [check_in, check_out)."""

    room_type_id: uuid.UUID
    check_in: date
    check_out: date
    units: int = 1

    def __post_init__(self) -> None:
        if self.check_out <= self.check_in:
            raise InvalidInput("check_out must be after check_in", field="check_out")
        if self.units < 1:
            raise InvalidInput("units must be at least 1", field="units")

    @property
    def night_count(self) -> int:
        return (self.check_out - self.check_in).days

    @property
    def nights(self) -> list[date]:
        return [self.check_in + timedelta(days=i) for i in range(self.night_count)]


class NightsUnavailable(Conflict):
    """Some nights of the stay cannot be held; `nights` names each with its reason."""

    code, title = "nights-unavailable", "Not available for these nights"

    def __init__(self, nights: list[dict]) -> None:
        listed = ", ".join(f"{n['night']} ({n['reason']})" for n in nights)
        super().__init__(f"Not available: {listed}", nights=nights)


class InventoryInconsistent(RuntimeError):
    """A release or confirm found fewer held/booked units than the booking says it has: a bug, never a race."""


def snapshot(row) -> NightSnapshot:
    return NightSnapshot(
        night=row.night,
        total=row.total,
        available=row.total - row.held - row.booked,
        price=row.price_amount,
        closed=row.closed,
        closed_to_arrival=row.closed_to_arrival,
        min_stay=row.min_stay,
    )


def changed_event(room_type_id: uuid.UUID, rows: Sequence, reason: str) -> InventoryChanged:
    ordered = sorted(rows, key=lambda r: r.night)
    return InventoryChanged(
        property_id=ordered[0].property_id,
        room_type_id=room_type_id,
        start=ordered[0].night,
        end=ordered[-1].night + timedelta(days=1),
        currency=ordered[0].currency,
        reason=reason,
        nights=[snapshot(r) for r in ordered],
    )


async def open_calendar(
    uow: UnitOfWork,
    *,
    property_id: uuid.UUID,
    room_type_id: uuid.UUID,
    total: int,
    price_amount: int,
    currency: str,
    start: date,
    days: int,
    reason: str = "created",
) -> int:
    """Creates room-night rows for [start, start + days) that do not exist yet; returns how many."""
    existing = set(
        (
            await uow.session.scalars(
                select(RoomNight.night).where(
                    RoomNight.room_type_id == room_type_id,
                    RoomNight.night >= start,
                    RoomNight.night < start + timedelta(days=days),
                )
            )
        ).all()
    )
    rows = [
        {
            "room_type_id": room_type_id,
            "night": night,
            "property_id": property_id,
            "total": total,
            "held": 0,
            "booked": 0,
            "price_amount": price_amount,
            "currency": currency,
            "min_stay": 1,
            "closed": False,
            "closed_to_arrival": False,
        }
        for night in (start + timedelta(days=i) for i in range(days))
        if night not in existing
    ]
    if rows:
        await uow.session.execute(insert(RoomNight), rows)
        uow.emit(
            InventoryChanged(
                property_id=property_id,
                room_type_id=room_type_id,
                start=rows[0]["night"],
                end=rows[-1]["night"] + timedelta(days=1),
                currency=currency,
                reason=reason,
                nights=[
                    NightSnapshot(
                        night=r["night"],
                        total=total,
                        available=total,
                        price=price_amount,
                        closed=False,
                        closed_to_arrival=False,
                        min_stay=1,
                    )
                    for r in rows
                ],
            )
        )
    return len(rows)


async def hold(uow: UnitOfWork, stay: Stay) -> list[NightSnapshot]:
    """Holds `stay.units` on every night of the stay, or raises NightsUnavailable naming the nights.

    Must run inside the caller's unit of work (the booking row and its event commit with it);
    the exception makes the unit of work roll back, undoing any nights the statement did touch.
    """
    statement = (
        update(RoomNight)
        .where(
            RoomNight.room_type_id == stay.room_type_id,
            RoomNight.night >= stay.check_in,
            RoomNight.night < stay.check_out,
            RoomNight.total - RoomNight.held - RoomNight.booked >= stay.units,
            RoomNight.closed.is_(False),
            or_(
                RoomNight.night != stay.check_in,
                and_(RoomNight.closed_to_arrival.is_(False), RoomNight.min_stay <= stay.night_count),
            ),
        )
        .values(held=RoomNight.held + stay.units)
        .returning(*_RETURNED)
        .execution_options(synchronize_session=False)
    )
    rows = (await uow.session.execute(statement)).all()
    if len(rows) != stay.night_count:
        touched = {row.night for row in rows}
        raise NightsUnavailable(await _explain_unavailable(uow, stay, touched))
    uow.emit(changed_event(stay.room_type_id, rows, "hold"))
    return [snapshot(row) for row in rows]


async def _explain_unavailable(uow: UnitOfWork, stay: Stay, touched: set[date]) -> list[dict]:
    rows = {
        row.night: row
        for row in (
            await uow.session.execute(
                select(*_RETURNED).where(
                    RoomNight.room_type_id == stay.room_type_id,
                    RoomNight.night >= stay.check_in,
                    RoomNight.night < stay.check_out,
                )
            )
        ).all()
    }
    explained = []
    for night in stay.nights:
        if night in touched:
            continue
        row = rows.get(night)
        if row is None:
            reason = "not on sale"
        elif row.closed:
            reason = "closed"
        elif row.total - row.held - row.booked < stay.units:
            reason = "sold out"
        elif night == stay.check_in and row.closed_to_arrival:
            reason = "closed to arrival"
        elif night == stay.check_in and row.min_stay > stay.night_count:
            reason = f"minimum stay {row.min_stay} nights"
        else:
            reason = "changed concurrently"
        explained.append({"night": night.isoformat(), "reason": reason})
    return explained


async def _move(uow: UnitOfWork, stay: Stay, values: dict, guard, reason: str) -> list[NightSnapshot]:
    statement = (
        update(RoomNight)
        .where(
            RoomNight.room_type_id == stay.room_type_id,
            RoomNight.night >= stay.check_in,
            RoomNight.night < stay.check_out,
            guard,
        )
        .values(**values)
        .returning(*_RETURNED)
        .execution_options(synchronize_session=False)
    )
    rows = (await uow.session.execute(statement)).all()
    if len(rows) != stay.night_count:
        raise InventoryInconsistent(
            f"{reason}: expected {stay.night_count} nights of {stay.room_type_id} from {stay.check_in}, "
            f"matched {len(rows)}"
        )
    uow.emit(changed_event(stay.room_type_id, rows, reason))
    return [snapshot(row) for row in rows]


async def release_hold(uow: UnitOfWork, stay: Stay) -> list[NightSnapshot]:
    """Gives held units back (hold expired, payment failed)."""
    return await _move(uow, stay, {"held": RoomNight.held - stay.units}, RoomNight.held >= stay.units, "release")


async def confirm_hold(uow: UnitOfWork, stay: Stay) -> list[NightSnapshot]:
    """Turns held units into booked units (payment captured)."""
    return await _move(
        uow,
        stay,
        {"held": RoomNight.held - stay.units, "booked": RoomNight.booked + stay.units},
        RoomNight.held >= stay.units,
        "confirm",
    )


async def release_booking(uow: UnitOfWork, stay: Stay) -> list[NightSnapshot]:
    """Gives booked units back (cancellation)."""
    return await _move(uow, stay, {"booked": RoomNight.booked - stay.units}, RoomNight.booked >= stay.units, "cancel")


async def nights(session, room_type_id: uuid.UUID, start: date, end: date) -> list[NightSnapshot]:
    """The calendar of one room type over [start, end), nights without rows omitted."""
    rows = (
        await session.execute(
            select(*_RETURNED)
            .where(RoomNight.room_type_id == room_type_id, RoomNight.night >= start, RoomNight.night < end)
            .order_by(RoomNight.night)
        )
    ).all()
    return [snapshot(row) for row in rows]
