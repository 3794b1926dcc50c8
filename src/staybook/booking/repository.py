"""The booking context's SQL: the hot path's statements (ADR 0012) and the changes built on them.

The hot path (hold, pay, confirm): one statement per change, no reload of rows it just wrote,
prepared on PostgreSQL (kernel.db.Sql; docs/booking-saga.md "Performance"). A booking read this
way is a Record; `views.present` and `views.snapshot` read its attributes as they read an ORM row.
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime, timedelta

import structlog
from sqlalchemy import column, select

from staybook.booking.domain import IN_FLIGHT, LIFECYCLE, SAGA, BookingStatus, SagaStep
from staybook.booking.models import Booking, BookingHistory, BookingSaga
from staybook.kernel.db import Sql, UnitOfWork, insert_sql
from staybook.kernel.orm import new_id, utcnow

audit = structlog.get_logger("staybook.audit")

BOOKINGS = Booking.__table__
HISTORY = BookingHistory.__table__
SAGAS = BookingSaga.__table__

_BOOKING_COLUMNS = tuple(column.name for column in BOOKINGS.c)
_RETURNING_BOOKING = " RETURNING " + ", ".join(_BOOKING_COLUMNS)
INSERT_BOOKING = Sql(
    insert_sql(BOOKINGS, _BOOKING_COLUMNS),
    table=BOOKINGS,
)
INSERT_SAGA = Sql(
    "INSERT INTO booking_sagas (booking_id, step, attempts, updated_at) VALUES (:booking_id, :step, 0, :updated_at)",
    table=SAGAS,
)
_HISTORY_COLUMNS = ("id", "booking_id", "from_status", "to_status", "actor", "reason", "at")
_INSERT_HISTORY = Sql(
    insert_sql(HISTORY, _HISTORY_COLUMNS),
    table=HISTORY,
)
_SAGA_STEP = column("saga_step", SAGAS.c.step.type)
# The booking (locked) and its saga step in one statement: where a payment starts.
PAYABLE = Sql(
    "SELECT " + ", ".join(f"b.{c}" for c in _BOOKING_COLUMNS) + ", s.step AS saga_step"
    " FROM bookings b JOIN booking_sagas s ON s.booking_id = b.id WHERE b.id = :id FOR UPDATE OF b",
    table=BOOKINGS,
    returns=[*BOOKINGS.c, _SAGA_STEP],
)
# The saga's step, the booking and the payment request's key: what a saga run starts from.
SAGA_STATE = Sql(
    "SELECT " + ", ".join(f"b.{c}" for c in _BOOKING_COLUMNS) + ", s.step AS saga_step,"
    " s.payment_id AS saga_payment_id, s.answer_scope, s.answer_key"
    " FROM bookings b JOIN booking_sagas s ON s.booking_id = b.id WHERE b.id = :id",
    table=BOOKINGS,
    returns=[
        *BOOKINGS.c,
        _SAGA_STEP,
        column("saga_payment_id", SAGAS.c.payment_id.type),
        SAGAS.c.answer_scope,
        SAGAS.c.answer_key,
    ],
)
_READ = Sql(f"SELECT {', '.join(_BOOKING_COLUMNS)} FROM bookings WHERE id = :id", table=BOOKINGS, returns=BOOKINGS.c)
_LOCK = Sql(
    f"SELECT {', '.join(_BOOKING_COLUMNS)} FROM bookings WHERE id = :id FOR UPDATE", table=BOOKINGS, returns=BOOKINGS.c
)
# Locks the booking and confirms it if it is still held, in one statement.
CONFIRM = Sql(
    f"UPDATE bookings SET status = :status, updated_at = :updated_at WHERE id = :id AND status = '{BookingStatus.HELD}'"
    + _RETURNING_BOOKING,
    table=BOOKINGS,
    returns=BOOKINGS.c,
)
SET_PAYMENT = Sql("UPDATE bookings SET payment_id = :payment_id WHERE id = :id", table=BOOKINGS)
_NOTE_ATTEMPT = Sql(
    "UPDATE booking_sagas SET attempts = attempts + 1, last_error = :last_error WHERE booking_id = :booking_id",
    table=SAGAS,
)


@functools.cache
def _update_booking(columns: tuple[str, ...]) -> Sql:
    """`UPDATE bookings SET <columns> WHERE id = :id RETURNING *`, built once per set of columns."""
    changes = ", ".join(f"{name} = :{name}" for name in columns)
    return Sql(f"UPDATE bookings SET {changes} WHERE id = :id" + _RETURNING_BOOKING, table=BOOKINGS, returns=BOOKINGS.c)


@functools.cache
def _update_step(columns: tuple[str, ...], count_attempt: bool) -> Sql:
    """The guarded saga step change (`WHERE step = :expected`), built once per set of columns."""
    changes = ", ".join(["step = :step", "updated_at = :updated_at", *(f"{name} = :{name}" for name in columns)])
    if count_attempt:
        changes += ", attempts = attempts + 1"
    return Sql(
        f"UPDATE booking_sagas SET {changes} WHERE booking_id = :booking_id AND step = :expected",
        table=SAGAS,
        types={"expected": SAGAS.c.step.type},
    )


class StepTaken(Exception):
    """Another process advanced the saga first; the caller reloads and carries on from there."""


async def read(uow: UnitOfWork, booking_id: uuid.UUID):
    return await uow.fetchrow(_READ, {"id": booking_id})


async def lock(uow: UnitOfWork, booking_id: uuid.UUID):
    return await uow.fetchrow(_LOCK, {"id": booking_id})


def history(
    uow: UnitOfWork, booking_id: uuid.UUID, from_status: str | None, to_status: str, actor: str, reason: str | None
) -> None:
    """The status change's history row (written at commit) and its audit line."""
    uow.defer(
        _INSERT_HISTORY,
        {
            "id": new_id(),
            "booking_id": booking_id,
            "from_status": from_status,
            "to_status": to_status,
            "actor": actor,
            "reason": reason,
            "at": utcnow(),
        },
    )
    audit.info(
        "booking status changed",
        booking_id=str(booking_id),
        context={"from": from_status, "to": to_status, "actor": actor, "reason": reason},
    )


async def transition(uow: UnitOfWork, booking, wanted: BookingStatus, actor: str, reason: str | None = None, **values):
    """Moves a booking the caller has locked to `wanted` (with `values`); returns the updated row."""
    before = booking.status
    status = LIFECYCLE.require(before, wanted)
    values.update(status=status, updated_at=utcnow())
    updated = await uow.fetchrow(_update_booking(tuple(sorted(values))), {**values, "id": booking.id})
    history(uow, booking.id, before, status, actor, reason)
    return updated


async def set_step(
    uow: UnitOfWork, booking_id: uuid.UUID, expected: SagaStep, step: SagaStep, *, count_attempt: bool = False, **values
) -> None:
    """Guarded step change: exactly one of two racing processes moves the saga on."""
    SAGA.require(expected, step)
    statement = _update_step(tuple(sorted(values)), count_attempt)
    params = {**values, "booking_id": booking_id, "expected": expected, "step": step, "updated_at": utcnow()}
    if await uow.execute(statement, params) != 1:
        raise StepTaken()


async def note_attempt(uow: UnitOfWork, booking_id: uuid.UUID, error: str) -> None:
    await uow.execute(_NOTE_ATTEMPT, {"booking_id": booking_id, "last_error": error[:2000]})


async def lock_expired_holds(uow: UnitOfWork, now: datetime, limit: int) -> list:
    """Held bookings past their deadline whose saga is still at `held`, oldest first, locked;
    `SKIP LOCKED`, so several workers take disjoint batches and a booking being paid is skipped."""
    result = await uow.session.execute(
        select(BOOKINGS)
        .join(SAGAS, SAGAS.c.booking_id == BOOKINGS.c.id)
        .where(BOOKINGS.c.status == BookingStatus.HELD, BOOKINGS.c.expires_at <= now, SAGAS.c.step == SagaStep.HELD)
        .order_by(BOOKINGS.c.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=BOOKINGS)
    )
    return result.all()


async def stuck_sagas(session, now: datetime, grace: timedelta, limit: int) -> list[uuid.UUID]:
    """Sagas in flight with no progress for `grace`, the longest waiting first."""
    result = await session.scalars(
        select(BookingSaga.booking_id)
        .where(BookingSaga.step.in_(IN_FLIGHT), BookingSaga.updated_at <= now - grace)
        .order_by(BookingSaga.updated_at)
        .limit(limit)
    )
    return result.all()
