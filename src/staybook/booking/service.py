"""Use cases of the booking context: hold, pay (the saga), cancel, expire, recover.

Every state change of a booking is one unit of work that also writes its history
row, its saga step and its outbox event. Payment calls happen between units of
work, never inside one (docs/booking-saga.md): record the intent, call the
provider, apply the result in a new transaction, compensate when the booking can
no longer be honoured. A crash between any two steps leaves a saga step the
recovery pass (`recover`) finishes or undoes.
"""

from __future__ import annotations

import functools
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import column, select, update

from staybook.booking import metrics, policy
from staybook.booking.events import (
    BookingCancelled,
    BookingConfirmed,
    BookingExpired,
    BookingHeld,
    BookingPaymentFailed,
    BookingSnapshot,
)
from staybook.booking.models import Booking, BookingHistory, BookingSaga
from staybook.booking.ports import CatalogStayCatalog, StayCatalog
from staybook.booking.schemas import BookingOut, HoldRequest, PaymentOutcome, PaymentSummary
from staybook.inventory import service as inventory
from staybook.inventory.service import Stay
from staybook.kernel.crypto import Sealer, reseal_column
from staybook.kernel.dates import check_stay
from staybook.kernel.db import Record, Sql, UnitOfWork, insert_sql
from staybook.kernel.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    StaybookError,
    UpstreamError,
    problem_body,
)
from staybook.kernel.idempotency import Claim, forget_answers, record_if_unanswered
from staybook.kernel.orm import new_id, utcnow
from staybook.kernel.runtime import PeriodicJob, Runtime
from staybook.kernel.schemas import MAX_AMOUNT
from staybook.kernel.security import Principal
from staybook.payments import service as payments
from staybook.payments.provider import ChargeState, CircuitOpen, ProviderError, ProviderTimeout

log = structlog.get_logger("staybook.booking")
audit = structlog.get_logger("staybook.audit")

catalog: StayCatalog = CatalogStayCatalog()

# Saga steps (docs/booking-saga.md). Terminal steps need nothing more from anyone.
HELD, AUTHORISING, CAPTURING, VOIDING, REFUNDING, CANCEL_REFUNDING = (
    "held",
    "authorising",
    "capturing",
    "voiding",
    "refunding",
    "cancel_refunding",
)
CONFIRMED, FAILED, COMPENSATED, EXPIRED, CANCELLED = "confirmed", "failed", "compensated", "expired", "cancelled"
IN_FLIGHT = (AUTHORISING, CAPTURING, VOIDING, REFUNDING, CANCEL_REFUNDING)

BOOKINGS = Booking.__table__
HISTORY = BookingHistory.__table__
SAGAS = BookingSaga.__table__


class PaymentInProgress(Conflict):
    """409 while an earlier payment attempt's saga runs; the key's answer is its outcome, not this."""

    transient = True


# The hot path (hold, pay, confirm): one statement per change, no reload of rows it just wrote,
# prepared on PostgreSQL (kernel.db.Sql; docs/booking-saga.md "Performance"). A booking read this
# way is a Record; `present` and `snapshot` read its attributes.
_BOOKING_COLUMNS = tuple(column.name for column in BOOKINGS.c)
_RETURNING_BOOKING = " RETURNING " + ", ".join(_BOOKING_COLUMNS)
_INSERT_BOOKING = Sql(
    insert_sql(BOOKINGS, _BOOKING_COLUMNS),
    table=BOOKINGS,
)
_INSERT_SAGA = Sql(
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
_PAYABLE = Sql(
    "SELECT " + ", ".join(f"b.{c}" for c in _BOOKING_COLUMNS) + ", s.step AS saga_step"
    " FROM bookings b JOIN booking_sagas s ON s.booking_id = b.id WHERE b.id = :id FOR UPDATE OF b",
    table=BOOKINGS,
    returns=[*BOOKINGS.c, _SAGA_STEP],
)
# The saga's step, the booking and the payment request's key: what a saga run starts from.
_SAGA_STATE = Sql(
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
_CONFIRM = Sql(
    "UPDATE bookings SET status = :status, updated_at = :updated_at WHERE id = :id AND status = 'held'"
    + _RETURNING_BOOKING,
    table=BOOKINGS,
    returns=BOOKINGS.c,
)
_SET_PAYMENT = Sql("UPDATE bookings SET payment_id = :payment_id WHERE id = :id", table=BOOKINGS)
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


_REFERENCE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

# A seam for the crash tests: called with the name of each saga point between a provider
# call and its transaction. Production never sets it; tests/faults.py installs a kill -9.
checkpoint_hook: Callable[[str], None] | None = None


def checkpoint(name: str) -> None:
    if checkpoint_hook is not None:
        checkpoint_hook(name)


class HoldExpired(Conflict):
    code, title = "hold-expired", "The hold on this booking has expired"


class PaymentDeclined(StaybookError):
    status, code, title = 402, "payment-declined", "Payment declined"


class ProviderUnavailable(UpstreamError):
    """The provider failed before reserving anything: the booking stays held and the guest may pay again."""

    code, title = "payment-provider-error", "The payment provider failed; nothing was charged"


class _StepTaken(Exception):
    """Another process advanced the saga first; the caller reloads and carries on from there."""


# ------------------------------------------------------------------ presentation


def stay_of(booking: Booking) -> Stay:
    return Stay(booking.room_type_id, booking.check_in, booking.check_out, booking.units)


def snapshot(booking: Booking) -> BookingSnapshot:
    return BookingSnapshot(
        booking_id=booking.id,
        reference=booking.reference,
        status=booking.status,
        guest_user_id=booking.guest_user_id,
        host_id=booking.host_id,
        property=booking.property,
        room_type={"room_type_id": str(booking.room_type_id), "name": booking.room_type_name},
        check_in=booking.check_in.isoformat(),
        check_out=booking.check_out.isoformat(),
        nights=(booking.check_out - booking.check_in).days,
        units=booking.units,
        guests=booking.guests,
        total={"amount": booking.total_amount, "currency": booking.currency},
        expires_at=booking.expires_at.isoformat() if booking.status == "held" else None,
        cancellation_policy=booking.cancellation_policy,
    )


GUEST_PURPOSE = "bookings.guest"


def seal_guest(sealer: Sealer, guest: dict) -> dict:
    """The guest's name, email and phone as stored: sealed (kernel/crypto.py), never plain text."""
    return {"sealed": sealer.seal(guest, GUEST_PURPOSE)}


ERASED_GUEST = {"erased": True}


def open_guest(sealer: Sealer, stored: dict) -> dict:
    """A stored guest, opened; `{"erased": true}` once the guest's data was erased."""
    if isinstance(stored, dict) and "sealed" in stored:
        return sealer.open(stored["sealed"], GUEST_PURPOSE)
    return stored


def guest_of(sealer: Sealer, booking: Booking) -> dict:
    return open_guest(sealer, booking.guest)


async def guest_details(uow: UnitOfWork, booking_id: uuid.UUID) -> dict | None:
    """The name, email, phone and locale the guest gave for a booking, for a context that writes to
    the guest (notifications): events carry the booking's id, not its contact data. None for an
    unknown booking or an erased guest."""
    stored = await uow.session.scalar(select(Booking.guest).where(Booking.id == booking_id))
    if stored is None or uow.sealer is None:
        return None
    guest = open_guest(uow.sealer, stored)
    return None if guest.get("erased") else guest


async def erase_guest(uow: UnitOfWork, user_id: uuid.UUID) -> int:
    """`user.erased`: the guest details of the user's bookings are dropped. The bookings stay, with
    their ids, stays and amounts, as the financial record the law requires; nothing in them names
    the person any more. Stored answers to the user's requests (which echo the details) go too."""
    result = await uow.session.execute(
        update(Booking).where(Booking.guest_user_id == user_id).values(guest=ERASED_GUEST, updated_at=utcnow())
    )
    await forget_answers(uow, str(user_id))
    return result.rowcount or 0


async def reseal_personal_data(runtime: Runtime, batch_size: int = 500) -> int:
    """Re-seals guest details sealed under an older master key (a key rotation); returns how many."""
    return await reseal_column(runtime.db, Booking.__table__.c.id, Booking.__table__.c.guest, GUEST_PURPOSE, batch_size)


async def export_personal_data(runtime: Runtime, user_id: uuid.UUID) -> dict:
    """The user's bookings as their GDPR export shows them (guest details opened)."""
    async with runtime.db.replica_session() as session:  # an export may be a moment behind
        rows = (await session.scalars(select(Booking).where(Booking.guest_user_id == user_id))).all()
    return {"bookings": [present(row, runtime.db.sealer) for row in rows]}


def present(booking: Booking, sealer: Sealer) -> dict:
    """The booking as the API shows it (JSON-ready; also what idempotent replays return)."""
    money = {"currency": booking.currency}
    return BookingOut(
        id=booking.id,
        reference=booking.reference,
        status=booking.status,
        guest_user_id=booking.guest_user_id,
        guest=guest_of(sealer, booking),
        host_id=booking.host_id,
        property=booking.property,
        room_type={"room_type_id": str(booking.room_type_id), "name": booking.room_type_name},
        check_in=booking.check_in,
        check_out=booking.check_out,
        nights=(booking.check_out - booking.check_in).days,
        units=booking.units,
        guests=booking.guests,
        total={"amount": booking.total_amount, **money},
        price_breakdown=booking.nightly_prices,
        cancellation_policy=booking.cancellation_policy,
        expires_at=booking.expires_at if booking.status == "held" else None,
        payment_id=booking.payment_id,
        refund={"amount": booking.refund_amount, **money} if booking.refund_amount is not None else None,
        cancelled_by=booking.cancelled_by,
        failure_reason=booking.failure_reason,
        created_at=booking.created_at,
    ).model_dump(mode="json")


def _outcome(sealer: Sealer, booking: Booking, payment: payments.PaymentView | None, outcome: str, detail: str) -> dict:
    summary = None
    if payment is not None:
        summary = PaymentSummary(
            payment_id=payment.id,
            status=payment.status,
            amount={"amount": payment.amount, "currency": payment.currency},
            refunded={"amount": payment.refunded_amount, "currency": payment.currency},
        )
    return PaymentOutcome(booking=present(booking, sealer), payment=summary, outcome=outcome, detail=detail).model_dump(
        mode="json"
    )


def _history(
    uow: UnitOfWork, booking_id: uuid.UUID, from_status: str | None, to_status: str, actor: str, reason: str | None
) -> None:
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


async def _transition(uow: UnitOfWork, booking, wanted: str, actor: str, reason: str | None = None, **values):
    """Moves a booking the caller has locked to `wanted` (with `values`); returns the updated row."""
    before = booking.status
    status = policy.next_status(before, wanted)
    values.update(status=status, updated_at=utcnow())
    updated = await uow.fetchrow(_update_booking(tuple(sorted(values))), {**values, "id": booking.id})
    _history(uow, booking.id, before, status, actor, reason)
    return updated


async def _set_step(
    uow: UnitOfWork, booking_id: uuid.UUID, expected: str, step: str, *, count_attempt: bool = False, **values
) -> None:
    """Guarded step change: exactly one of two racing processes moves the saga on."""
    statement = _update_step(tuple(sorted(values)), count_attempt)
    params = {**values, "booking_id": booking_id, "expected": expected, "step": step, "updated_at": utcnow()}
    if await uow.execute(statement, params) != 1:
        raise _StepTaken()


# ------------------------------------------------------------------ hold


def validate_stay(request: HoldRequest, *, today: date, max_nights: int) -> None:
    """Refuses stays the calendar should never see: backwards, in the past, too long."""
    if request.check_out <= request.check_in:
        raise InvalidInput("check_out must be after check_in", field="body.check_out")
    if request.check_in < today:
        raise InvalidInput("check_in is in the past", field="body.check_in")
    if (request.check_out - request.check_in).days > max_nights:
        raise InvalidInput(f"stays are limited to {max_nights} nights", field="body.check_out")


async def place_hold(runtime: Runtime, principal: Principal, request: HoldRequest, claim: Claim | None) -> dict:
    """Holds the nights and creates the booking (status held), in ONE unit of work with its events.

    Raises NightsUnavailable (409, naming the nights) when any night lacks the units.
    """
    ttl = timedelta(seconds=runtime.settings.booking.hold_ttl_seconds)
    calendar = runtime.settings.inventory
    check_stay(
        request.check_in,
        request.check_out,
        max_nights=calendar.max_stay_nights,
        horizon_days=calendar.horizon_days,
        location="body",
    )
    async with runtime.db.transaction() as uow:
        if claim is not None:
            await claim.take(uow)
        facts = await catalog.room_type(uow, request.room_type_id)
        if facts is None:
            raise NotFound(f"No room type {request.room_type_id}")
        if not facts.bookable:
            raise InvalidInput("This room type is no longer bookable", field="body.room_type_id")
        today = datetime.now(ZoneInfo(facts.timezone)).date()
        validate_stay(request, today=today, max_nights=runtime.settings.inventory.max_stay_nights)
        if request.guests > facts.max_guests * request.units:
            raise InvalidInput(
                f"At most {facts.max_guests * request.units} guests for {request.units} room(s)", field="body.guests"
            )
        stay = Stay(request.room_type_id, request.check_in, request.check_out, request.units)
        # The hold first, priced by the rows it holds; the booking, its saga and history rows go out
        # with the answer and the outbox rows in one statement at commit (UnitOfWork.defer), so the
        # hold's row locks are kept for the fewest round trips (hot room types queue on those locks).
        held = await inventory.hold(uow, stay)
        now = utcnow()
        values = {
            "id": new_id(),
            "reference": "SB" + "".join(secrets.choice(_REFERENCE_ALPHABET) for _ in range(8)),
            "status": "held",
            "guest_user_id": principal.user_id,
            "guest": seal_guest(runtime.db.sealer, request.guest.model_dump(mode="json")),
            "host_id": facts.host_id,
            "property_id": facts.property_id,
            "property": facts.property_snapshot(),
            "room_type_id": facts.room_type_id,
            "room_type_name": facts.room_type_name,
            "check_in": request.check_in,
            "check_out": request.check_out,
            "units": request.units,
            "guests": request.guests,
            "currency": facts.currency,
            "cancellation_policy": facts.cancellation_policy,
            "expires_at": now + ttl,
            "payment_id": None,
            "refund_amount": None,
            "cancelled_by": None,
            "failure_reason": None,
            "created_at": now,
            "updated_at": now,
            **_price(request.units, sorted((n.night, n.price) for n in held)),
        }
        uow.defer(_INSERT_BOOKING, values)
        uow.defer(_INSERT_SAGA, {"booking_id": values["id"], "step": HELD, "updated_at": now})
        _history(uow, values["id"], None, "held", f"guest:{principal.user_id}", "hold placed")
        booking = Record(values)
        uow.emit(BookingHeld(booking=snapshot(booking)))
        metrics.BOOKINGS.labels("held").inc()
        body = present(booking, runtime.db.sealer)
        if claim is not None:
            claim.record(uow, 201, body)
    return body


def _price(units: int, nightly: list[tuple[date, int]]) -> dict:
    """The booking's price: the held nights' prices (per unit) times the units."""
    total = sum(amount for _, amount in nightly) * units
    if total > MAX_AMOUNT:
        # Each night's price is within bounds, their sum may not be: refused, not a 500 building the answer.
        raise InvalidInput(f"The stay's total is over the largest amount accepted, {MAX_AMOUNT}", field="body")
    return {
        "nightly_prices": [{"night": night.isoformat(), "amount": amount} for night, amount in nightly],
        "total_amount": total,
    }


# ------------------------------------------------------------------ reads


async def _visible(runtime: Runtime, principal: Principal, booking_id: uuid.UUID) -> Booking:
    async with runtime.db.session() as session:
        booking = await session.get(Booking, booking_id)
    if booking is None or not _may_see(principal, booking):
        raise NotFound(f"No booking {booking_id}")
    return booking


def _may_see(principal: Principal, booking: Booking) -> bool:
    return principal.is_admin or principal.user_id in (booking.guest_user_id, booking.host_id)


async def get_booking(runtime: Runtime, principal: Principal, booking_id: uuid.UUID) -> dict:
    """The booking, for its guest, the property's host or an admin (404 for anyone else)."""
    return present(await _visible(runtime, principal, booking_id), runtime.db.sealer)


async def list_for_guest(runtime: Runtime, principal: Principal, *, cursor: uuid.UUID | None, limit: int) -> dict:
    """The principal's own bookings, newest first, cursor-paginated."""
    query = select(Booking).where(Booking.guest_user_id == principal.user_id)
    return await _page(runtime, query, cursor, limit)


async def list_for_host(
    runtime: Runtime,
    principal: Principal,
    *,
    property_id: uuid.UUID | None,
    start: date | None,
    end: date | None,
    cursor: uuid.UUID | None,
    limit: int,
) -> dict:
    """Bookings of the host's properties overlapping [start, end), newest first."""
    if start and end and end <= start:
        raise InvalidInput("to must be after from", field="query.to")
    query = select(Booking)
    if not principal.is_admin:
        query = query.where(Booking.host_id == principal.user_id)
    if property_id is not None:
        query = query.where(Booking.property_id == property_id)
    if start is not None:
        query = query.where(Booking.check_out > start)
    if end is not None:
        query = query.where(Booking.check_in < end)
    return await _page(runtime, query, cursor, limit)


async def _page(runtime: Runtime, query, cursor: uuid.UUID | None, limit: int) -> dict:
    if cursor is not None:
        query = query.where(Booking.id < cursor)  # ids are UUIDv7: time-ordered
    async with runtime.db.session() as session:
        rows = (await session.scalars(query.order_by(Booking.id.desc()).limit(limit + 1))).all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [present(b, runtime.db.sealer) for b in rows]
    return {"items": items, "next_cursor": str(rows[-1].id) if more and rows else None}


# ------------------------------------------------------------------ the payment saga


@dataclass
class _Drive:
    """How a saga run behaves: the live request (has the token and the idempotency claim),
    a webhook (only moves a saga the provider answered late), or the recovery pass."""

    mode: str  # live | webhook | recovery
    token: str | None = None
    claim: Claim | None = None
    answer: tuple[int, dict] | None = None
    # A webhook run captures only an authorisation it applied itself; otherwise the live
    # request that recorded the authorisation is capturing it right now.
    applied_authorisation: bool = False
    # (scope, key) of the payment request's Idempotency-Key, for webhook and recovery runs.
    answer_to: tuple[str, str] | None = None


async def pay(
    runtime: Runtime, principal: Principal, booking_id: uuid.UUID, token: str, claim: Claim | None
) -> tuple[int, dict]:
    """Pays a held booking: authorise and capture at the provider, then confirm (held -> booked).

    Returns (HTTP status, body): 200 confirmed, 202 provider did not answer in time (the
    booking stays held; a webhook or the recovery pass settles it), 402 declined (hold
    released), 409 the hold was gone by the time the money came (payment refunded).
    """
    async with runtime.db.transaction() as uow:
        # The key is claimed in the transaction that opens the payment; the answer comes with the last.
        if claim is not None:
            await claim.take(uow)
        booking = await uow.fetchrow(_PAYABLE, {"id": booking_id})
        if booking is None or not _may_see(principal, booking):
            raise NotFound(f"No booking {booking_id}")
        if booking.guest_user_id != principal.user_id:
            raise Forbidden("Only the booking's guest can pay for it")
        if booking.status != "held":
            raise Conflict(
                f"This booking is {booking.status}; only a held booking can be paid", booking_status=booking.status
            )
        if booking.saga_step != HELD:
            raise PaymentInProgress("A payment for this booking is already in progress", step=booking.saga_step)
        if booking.expires_at <= utcnow():
            raise HoldExpired("The hold expired before payment; please book again")
        payment = await payments.open_payment(
            uow,
            booking_id=booking.id,
            payer_id=principal.user_id,
            amount=booking.total_amount,
            currency=booking.currency,
            provider_name=payments.provider(runtime).name,
        )
        uow.defer(_SET_PAYMENT, {"id": booking_id, "payment_id": payment.id})
        await _set_step(
            uow,
            booking_id,
            HELD,
            AUTHORISING,
            count_attempt=True,
            payment_id=payment.id,
            answer_scope=claim.scope if claim else None,
            answer_key=claim.key if claim else None,
        )
    checkpoint("authorising")
    drive = _Drive("live", token=token, claim=claim)
    try:
        # The first pass starts from what this request just wrote: no reload.
        await _run(
            runtime,
            booking_id,
            drive,
            loaded=(AUTHORISING, Record(booking, payment_id=payment.id), payment),
        )
    except ProviderUnavailable:
        raise
    except ProviderError as error:
        raise UpstreamError(
            "The payment provider failed mid-way; the booking will be settled automatically", booking_id=str(booking_id)
        ) from error
    if drive.answer is None:  # only when another process finished the saga: its answer, or what it did
        async with runtime.db.transaction() as uow:
            stored = await claim.stored_answer(uow) if claim is not None else None
            if stored is not None:
                return stored
            booking = await _read(uow, booking_id)
            payment = await payments.for_booking(uow, booking_id)
        return 200, _outcome(runtime.db.sealer, booking, payment, booking.status, "settled by a concurrent process")
    return drive.answer


async def _read(uow: UnitOfWork, booking_id: uuid.UUID):
    return await uow.fetchrow(_READ, {"id": booking_id})


async def _lock(uow: UnitOfWork, booking_id: uuid.UUID):
    return await uow.fetchrow(_LOCK, {"id": booking_id})


async def _load(runtime: Runtime, booking_id: uuid.UUID):
    """The saga's step, the booking and its payment (two reads, no transaction needed)."""
    async with runtime.db.transaction(autocommit=True) as uow:
        booking = await uow.fetchrow(_SAGA_STATE, {"id": booking_id})
        if booking is None:
            return None, None, None
        payment = await payments.get(uow, booking.saga_payment_id) if booking.saga_payment_id else None
    return booking.saga_step, booking, payment


async def _run(runtime: Runtime, booking_id: uuid.UUID, drive: _Drive, loaded: tuple | None = None) -> None:
    """Advances the saga until it reaches a terminal step or has to wait for the provider.

    `loaded` (step, booking, payment) spares the first pass its read when the caller just wrote them.
    A live request stops as soon as it has its answer: the step it reached is terminal.
    """
    provider = payments.provider(runtime)
    for _ in range(20):  # each pass moves at least one step or returns; 20 is far more than the longest path
        if drive.mode == "live" and drive.answer is not None:
            return
        step, booking, payment = loaded if loaded is not None else await _load(runtime, booking_id)
        loaded = None
        if drive.mode != "live" and booking is not None and booking.answer_key is not None:
            drive.answer_to = (booking.answer_scope, booking.answer_key)
        try:
            if step == AUTHORISING:
                if not await _authorise(runtime, provider, booking, payment, drive):
                    return
            elif step == CAPTURING:
                if not await _capture(runtime, provider, booking, payment, drive):
                    return
            elif step == VOIDING:
                charge = await provider.void(payment.provider_reference, idempotency_key=f"{payment.id}:void")
                await _finish_void(runtime, booking_id, charge, drive)
            elif step in (REFUNDING, CANCEL_REFUNDING):
                amount = payment.amount if step == REFUNDING else booking.refund_amount
                checkpoint(step)
                charge = await provider.refund(
                    payment.provider_reference, amount=amount, idempotency_key=f"{payment.id}:refund"
                )
                await _finish_refund(runtime, booking_id, step, charge, drive)
            else:
                return
        except _StepTaken:
            continue
        except ProviderTimeout as error:
            await _note_attempt(runtime, booking_id, str(error))
            if drive.mode == "live":
                drive.answer = (
                    202,
                    _outcome(
                        runtime.db.sealer,
                        booking,
                        payment,
                        "pending",
                        "The payment provider has not answered yet; the booking stays held until it does.",
                    ),
                )
                await _record_answer(runtime, drive)
            return
        except ProviderError as error:
            await _note_attempt(runtime, booking_id, str(error))
            if drive.mode == "live":
                raise
            return


async def _record_answer(runtime: Runtime, drive: _Drive) -> None:
    """Stores the live answer unless a webhook already answered under the key; then that is the answer."""
    if drive.claim is not None and drive.answer is not None:
        async with runtime.db.transaction() as uow:
            claim = drive.claim
            if not await record_if_unanswered(uow, claim.scope, claim.key, *drive.answer):
                drive.answer = await claim.stored_answer(uow) or drive.answer


async def _note_attempt(runtime: Runtime, booking_id: uuid.UUID, error: str) -> None:
    async with runtime.db.transaction() as uow:
        await uow.execute(_NOTE_ATTEMPT, {"booking_id": booking_id, "last_error": error[:2000]})


async def _authorise(runtime, provider, booking: Booking, payment, drive: _Drive) -> bool:
    """Step AUTHORISING -> CAPTURING (authorised) or FAILED (declined). False: nothing to do now."""
    charge: ChargeState | None = None
    if payment.status == "pending":
        if drive.mode == "live":
            breaker = payments.breaker(runtime)
            try:
                breaker.check()  # while the provider keeps failing, fail fast: it is not called
                charge = await provider.authorise(
                    token=drive.token, amount=payment.amount, currency=payment.currency, idempotency_key=str(payment.id)
                )
            except ProviderTimeout:
                breaker.failed()
                raise
            except ProviderError as error:  # the provider refused to work: nothing was reserved
                if not isinstance(error, CircuitOpen):
                    breaker.failed()
                await _back_to_held(runtime, booking.id, payment, f"provider error: {error}")
                raise ProviderUnavailable(
                    "The payment provider failed before charging anything; the booking is still held, "
                    "so the payment can be tried again until the hold expires.",
                    booking_id=str(booking.id),
                    booking_status="held",
                    expires_at=booking.expires_at.isoformat(),
                ) from error
            breaker.succeeded()
            checkpoint("authorised-at-provider")
        elif drive.mode == "recovery":
            charge = await provider.find(str(payment.id))
            if charge is None:
                await _fail(runtime, booking.id, AUTHORISING, payment, "payment interrupted before the provider", drive)
                return True
        else:
            return False  # a webhook about something else; the live request or recovery will settle it
    status = charge.status if charge is not None else payment.status
    if status == "declined" or status == "failed":
        reason = (charge.decline_code if charge else None) or "declined"
        await _fail(runtime, booking.id, AUTHORISING, payment, reason, drive, charge=charge)
        return True
    if drive.mode == "live":
        # Straight on to capture: no transaction in between. A crash here leaves step AUTHORISING,
        # and recovery asks the provider (`find`) what happened, so nothing is lost by not recording it.
        try:
            captured = await provider.capture(
                charge.reference, amount=payment.amount, idempotency_key=f"{payment.id}:capture"
            )
        except ProviderError:
            # Money is reserved but not taken: record that, so a webhook or recovery captures or voids it.
            async with runtime.db.transaction() as uow:
                await payments.record(uow, payment.id, "authorised", charge=charge)
                await _set_step(uow, booking.id, AUTHORISING, CAPTURING)
            raise
        checkpoint("captured-at-provider")
        await _finish_capture(runtime, booking.id, captured, payment, drive, expected=AUTHORISING, authorisation=charge)
        return True
    async with runtime.db.transaction() as uow:
        if charge is not None:
            await payments.record(uow, payment.id, "authorised", charge=charge)
        await _set_step(uow, booking.id, AUTHORISING, CAPTURING)
    drive.applied_authorisation = True
    checkpoint("capturing")
    return True


async def _back_to_held(runtime, booking_id: uuid.UUID, payment, reason: str) -> None:
    """The saga returns to `held` (the payment stays pending, to be tried again with the same
    idempotency key at the provider); one transaction."""
    async with runtime.db.transaction() as uow:
        await payments.note_error(uow, payment.id, reason)
        await _set_step(uow, booking_id, AUTHORISING, HELD, last_error=reason[:2000])


async def _capture(runtime, provider, booking: Booking, payment, drive: _Drive) -> bool:
    """Step CAPTURING -> CONFIRMED, or REFUNDING/VOIDING when the booking cannot be honoured."""
    if payment.status == "captured":
        await _finish_capture(runtime, booking.id, None, payment, drive)
        return True
    if drive.mode == "recovery":
        # A crash after authorising: ask the provider whether the capture happened.
        charge = await provider.find(str(payment.id))
        if charge is not None and charge.status in ("captured", "refunded"):
            await _finish_capture(runtime, booking.id, charge, payment, drive)
            return True
        async with runtime.db.transaction() as uow:
            await _set_step(uow, booking.id, CAPTURING, VOIDING)
        return True
    if drive.mode == "webhook" and not drive.applied_authorisation:
        return False
    if booking.status != "held":
        async with runtime.db.transaction() as uow:
            await _set_step(uow, booking.id, CAPTURING, VOIDING)
        return True
    charge = await provider.capture(
        payment.provider_reference, amount=payment.amount, idempotency_key=f"{payment.id}:capture"
    )
    checkpoint("captured-at-provider")
    await _finish_capture(runtime, booking.id, charge, payment, drive)
    return True


async def _finish_capture(
    runtime,
    booking_id,
    charge: ChargeState | None,
    payment,
    drive: _Drive,
    *,
    expected: str = CAPTURING,
    authorisation: ChargeState | None = None,
) -> None:
    """One transaction: payment captured, and booking confirmed (held -> booked) or refund scheduled."""
    async with runtime.db.transaction() as uow:
        # One conditional UPDATE locks the booking and confirms it if it is still held.
        confirmed = {"id": booking_id, "status": policy.next_status("held", "confirmed"), "updated_at": utcnow()}
        booking = await uow.fetchrow(_CONFIRM, confirmed)
        if authorisation is not None:
            await payments.record(uow, payment.id, "authorised", charge=authorisation)
        captured = await payments.record(uow, payment.id, "captured", charge=charge)
        if booking is not None:
            await inventory.confirm_hold(uow, stay_of(booking))
            _history(uow, booking_id, "held", booking.status, "saga", "payment captured")
            await _set_step(uow, booking_id, expected, CONFIRMED)
            uow.emit(BookingConfirmed(booking=snapshot(booking), payment_id=payment.id))
            metrics.BOOKINGS.labels("confirmed").inc()
            metrics.BOOKING_VALUE.labels(booking.currency).inc(booking.total_amount)
            detail = "Payment captured; the booking is confirmed."
            answer = (200, _outcome(runtime.db.sealer, booking, captured, "confirmed", detail))
        else:
            # The hold ended while the money moved (expired by an operator, recovered late): give it back.
            await _set_step(uow, booking_id, expected, REFUNDING)
            answer = None
        if answer is not None:
            await _answer(uow, drive, *answer)


async def _fail(runtime, booking_id, expected_step: str, payment, reason: str, drive: _Drive, charge=None) -> None:
    """Payment failed: record it, release the hold, booking payment_failed; one transaction."""
    async with runtime.db.transaction() as uow:
        booking = await _lock(uow, booking_id)
        failed = await payments.record(uow, payment.id, "failed", charge=charge, reason=reason)
        if booking.status == "held":
            await inventory.release_hold(uow, stay_of(booking))
            booking = await _transition(uow, booking, "payment_failed", "saga", reason, failure_reason=reason)
            uow.emit(BookingPaymentFailed(booking=snapshot(booking), reason=reason))
            metrics.BOOKINGS.labels("payment_failed").inc()
        await _set_step(uow, booking_id, expected_step, FAILED)
        error = PaymentDeclined(
            f"The payment was declined ({reason}); the hold is released.",
            booking_id=str(booking_id),
            reason=reason,
            booking_status=booking.status,
        )
        await _answer(uow, drive, 402, {**_problem(error), "payment": failed.status})


async def _answer(uow: UnitOfWork, drive: _Drive, status: int, body: dict) -> None:
    """The payment request's answer, stored with the change that produced it.

    A live request answers it and records it under its Idempotency-Key. A webhook or the
    recovery pass finishing a saga whose request died (or gave up waiting) records it under
    that request's key if no answer is stored there yet: a retry with the key then gets
    this first outcome, not a new reading of the booking.
    """
    if drive.mode == "live":
        drive.answer = (status, body)
        if drive.claim is not None:
            drive.claim.record(uow, status, body)
    elif drive.answer_to is not None:
        await record_if_unanswered(uow, *drive.answer_to, status, body)


def _problem(error: StaybookError) -> dict:
    return problem_body(error.status, error.code, error.title, error.detail, None, **error.extensions)


async def _finish_void(runtime, booking_id, charge: ChargeState, drive: _Drive) -> None:
    """Authorised but never captured: the authorisation is voided, the booking fails and frees its nights."""
    async with runtime.db.transaction() as uow:
        booking = await _lock(uow, booking_id)
        voided = await payments.record(uow, booking.payment_id, "voided", charge=charge)
        if booking.status == "held":
            await inventory.release_hold(uow, stay_of(booking))
            booking = await _transition(
                uow,
                booking,
                "payment_failed",
                "saga",
                "authorised payment voided after an interruption",
                failure_reason="payment voided",
            )
            uow.emit(BookingPaymentFailed(booking=snapshot(booking), reason="payment voided"))
            metrics.BOOKINGS.labels("payment_failed").inc()
        await _set_step(uow, booking_id, VOIDING, COMPENSATED)
        error = HoldExpired("The hold ended before the payment completed; the authorisation was voided.")
        await _answer(uow, drive, 409, {**_problem(error), "payment": voided.status})


async def _finish_refund(runtime, booking_id, step: str, charge: ChargeState, drive: _Drive) -> None:
    async with runtime.db.transaction() as uow:
        booking = await _read(uow, booking_id)
        refunded = await payments.record(uow, booking.payment_id, "refunded", charge=charge)
        await _set_step(uow, booking_id, step, COMPENSATED if step == REFUNDING else CANCELLED)
        if step == REFUNDING:
            error = HoldExpired("The hold ended before the payment completed; the payment was refunded.")
            await _answer(uow, drive, 409, {**_problem(error), "payment": refunded.status})


async def on_payment_settled(runtime: Runtime, booking_id: uuid.UUID) -> None:
    """A webhook moved this booking's payment: continue a saga that was waiting for the provider."""
    await _run(runtime, booking_id, _Drive("webhook"))


payments.settlement_listeners.append(on_payment_settled)


# ------------------------------------------------------------------ cancellation


async def cancel(
    runtime: Runtime, principal: Principal, booking_id: uuid.UUID, reason: str | None, claim: Claim | None
) -> dict:
    """Cancels a confirmed booking: nights back to inventory, refund by policy (hosts: in full)."""
    async with runtime.db.transaction() as uow:
        if claim is not None:
            await claim.take(uow)
        booking = await _lock(uow, booking_id)
        if booking is None or not _may_see(principal, booking):
            raise NotFound(f"No booking {booking_id}")
        if principal.is_admin:
            by = "admin"
        elif principal.user_id == booking.host_id:
            by = "host"
        else:
            by = "guest"
        if booking.status != "confirmed":
            raise Conflict(
                f"This booking is {booking.status}; only a confirmed booking can be cancelled",
                booking_status=booking.status,
            )
        refund = policy.refund_amount(
            booking.cancellation_policy,
            [n["amount"] * booking.units for n in booking.nightly_prices],
            booked_at=booking.created_at,
            starts_at=policy.check_in_moment(
                booking.check_in, booking.property["check_in_time"], booking.property["timezone"]
            ),
            cancelled_at=utcnow(),
            by_host=by != "guest",
        )
        await inventory.release_booking(uow, stay_of(booking))
        booking = await _transition(
            uow,
            booking,
            "cancelled",
            f"{by}:{principal.user_id}",
            reason or "cancelled",
            refund_amount=refund,
            cancelled_by=by,
        )
        await _set_step(uow, booking_id, CONFIRMED, CANCEL_REFUNDING if refund else CANCELLED)
        uow.emit(
            BookingCancelled(
                booking=snapshot(booking), cancelled_by=by, refund={"amount": refund, "currency": booking.currency}
            )
        )
        metrics.BOOKINGS.labels("cancelled").inc()
        body = present(booking, runtime.db.sealer)
        if claim is not None:
            claim.record(uow, 200, body)
    if refund:
        await _run(runtime, booking_id, _Drive("live"))
    return body


# ------------------------------------------------------------------ expiry and recovery


async def expire_holds(runtime: Runtime) -> int:
    """Expires one batch of held bookings past their deadline and releases their nights.

    `FOR UPDATE SKIP LOCKED`: several workers take disjoint batches, and a booking whose
    payment is being opened (row locked by the payer) is skipped, not waited for. Only
    sagas still at `held` expire; one with a payment in flight is the recovery pass's.
    """
    async with runtime.db.unit_of_work() as uow:
        bookings = (
            await uow.session.execute(
                select(BOOKINGS)
                .join(SAGAS, SAGAS.c.booking_id == BOOKINGS.c.id)
                .where(BOOKINGS.c.status == "held", BOOKINGS.c.expires_at <= utcnow(), SAGAS.c.step == HELD)
                .order_by(BOOKINGS.c.expires_at)
                .limit(runtime.settings.booking.expiry_batch_size)
                .with_for_update(skip_locked=True, of=BOOKINGS)
            )
        ).all()
        for booking in bookings:
            await inventory.release_hold(uow, stay_of(booking))
            if booking.payment_id is not None:  # a payment the provider failed on, never retried
                await payments.record(uow, booking.payment_id, "failed", reason="hold expired")
            booking = await _transition(uow, booking, "expired", "worker", "hold expired")
            await _set_step(uow, booking.id, HELD, EXPIRED)
            uow.emit(BookingExpired(booking=snapshot(booking)))
            metrics.BOOKINGS.labels("expired").inc()
    if bookings:
        log.info("expired holds", context={"count": len(bookings)})
    return len(bookings)


async def recover(runtime: Runtime, *, grace_seconds: float | None = None) -> int:
    """Finishes or undoes sagas left mid-way by a crash (no progress for the grace period).

    Captured but not confirmed -> confirm if the nights are still held, else refund;
    authorised but not captured -> void; never reached the provider -> payment failed.
    """
    grace = runtime.settings.booking.recovery_grace_seconds if grace_seconds is None else grace_seconds
    async with runtime.db.session() as session:
        stuck = (
            await session.scalars(
                select(BookingSaga.booking_id)
                .where(BookingSaga.step.in_(IN_FLIGHT), BookingSaga.updated_at <= utcnow() - timedelta(seconds=grace))
                .order_by(BookingSaga.updated_at)
                .limit(runtime.settings.booking.recovery_batch_size)
            )
        ).all()
    for booking_id in stuck:
        try:
            await _run(runtime, booking_id, _Drive("recovery"))
        except Exception as error:  # one stuck saga must not block the others; the next pass retries it
            log.warning(
                "saga recovery failed", booking_id=str(booking_id), error_type=type(error).__name__, message=str(error)
            )
    if stuck:
        log.info("recovered sagas", context={"count": len(stuck)})
    return len(stuck)


async def _expire_job(runtime: Runtime) -> None:
    while await expire_holds(runtime) == runtime.settings.booking.expiry_batch_size:
        pass


JOBS = [
    PeriodicJob("booking.expire-holds", 5, lambda runtime, _: _expire_job(runtime)),
    PeriodicJob("booking.recover-sagas", 30, lambda runtime, _: recover(runtime)),
]
