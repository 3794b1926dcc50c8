"""Use cases of the booking context: hold, pay, cancel, read, and the guest's personal data.

Every state change of a booking is one unit of work that also writes its history row, its saga
step and its outbox event. The decisions are `domain`'s, the SQL is `repository`'s, the payment
saga's runs (live, webhook, recovery) are `saga`'s (docs/booking-saga.md).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import date, timedelta

from sqlalchemy import select, update

from staybook.booking import metrics, repository, saga
from staybook.booking.domain import Booking as BookingRules
from staybook.booking.domain import BookingStatus, Driver, ProviderUnavailable, SagaStep, cancelled_by
from staybook.booking.events import BookingCancelled, BookingHeld
from staybook.booking.models import Booking
from staybook.booking.ports import BookingDeps, CatalogStayCatalog, StayCatalog, property_snapshot
from staybook.booking.saga import Drive, stay_of
from staybook.booking.schemas import HoldRequest
from staybook.booking.views import ERASED_GUEST, GUEST_PURPOSE, open_guest, outcome, present, seal_guest, snapshot
from staybook.inventory import service as inventory
from staybook.inventory.service import Stay
from staybook.kernel.crypto import reseal_column
from staybook.kernel.dates import check_stay, check_stay_at_property, today_in
from staybook.kernel.db import Record, UnitOfWork
from staybook.kernel.errors import Forbidden, InvalidInput, NotFound, UpstreamError
from staybook.kernel.idempotency import Claim, forget_answers
from staybook.kernel.orm import new_id, utcnow
from staybook.kernel.runtime import Runtime
from staybook.kernel.schemas import MAX_AMOUNT
from staybook.kernel.security import Principal
from staybook.payments import service as payments
from staybook.payments.provider import ProviderError

catalog: StayCatalog = CatalogStayCatalog()

_REFERENCE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


# ------------------------------------------------------------------ hold


async def place_hold(runtime: Runtime, principal: Principal, request: HoldRequest, claim: Claim | None) -> dict:
    """Holds the nights and creates the booking (status held), in ONE unit of work with its events.

    Raises NightsUnavailable (409, naming the nights) when any night lacks the units.
    """
    ttl = timedelta(seconds=runtime.settings.booking.hold_ttl_seconds)
    calendar = runtime.settings.inventory
    # Dates are named alone (check_in, check_out); the route answers them as body fields.
    check_stay(
        request.check_in, request.check_out, max_nights=calendar.max_stay_nights, horizon_days=calendar.horizon_days
    )
    async with runtime.db.transaction() as uow:
        if claim is not None:
            await claim.take(uow)
        facts = await catalog.room_type(uow, request.room_type_id)
        if facts is None:
            raise NotFound(f"No room type {request.room_type_id}")
        if not facts.on_sale:
            raise InvalidInput("This room type is no longer bookable", field="body.room_type_id")
        check_stay_at_property(
            request.check_in, request.check_out, today=today_in(facts.timezone), max_nights=calendar.max_stay_nights
        )
        if request.guests > facts.max_guests * request.units:
            raise InvalidInput(
                f"At most {facts.max_guests * request.units} guests for {request.units} room(s)", field="body.guests"
            )
        stay = Stay(request.room_type_id, request.check_in, request.check_out, request.units)
        # The hold first, priced by the rows it holds; the booking, its saga and history rows go out
        # with the answer and the outbox rows in one statement at commit (UnitOfWork.defer), so the
        # hold's row locks are kept for the fewest round trips (hot room types queue on those locks).
        held = await inventory.hold(uow, stay)
        now = runtime.now()
        values = {
            "id": new_id(),
            "reference": "SB" + "".join(secrets.choice(_REFERENCE_ALPHABET) for _ in range(8)),
            "status": BookingStatus.HELD,
            "guest_user_id": principal.user_id,
            "guest": seal_guest(runtime.db.sealer, request.guest.model_dump(mode="json")),
            "host_id": facts.host_id,
            "property_id": facts.property_id,
            "property": property_snapshot(facts),
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
        uow.defer(repository.INSERT_BOOKING, values)
        uow.defer(repository.INSERT_SAGA, {"booking_id": values["id"], "step": SagaStep.HELD, "updated_at": now})
        repository.history(uow, values["id"], None, BookingStatus.HELD, f"guest:{principal.user_id}", "hold placed")
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


# ------------------------------------------------------------------ payment


async def pay(
    runtime: Runtime,
    deps: BookingDeps,
    principal: Principal,
    booking_id: uuid.UUID,
    token: str,
    claim: Claim | None,
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
        booking = await uow.fetchrow(repository.PAYABLE, {"id": booking_id})
        if booking is None or not _may_see(principal, booking):
            raise NotFound(f"No booking {booking_id}")
        if booking.guest_user_id != principal.user_id:
            raise Forbidden("Only the booking's guest can pay for it")
        BookingRules.of(booking).require_payable(booking.saga_step, runtime.now())
        payment = await payments.open_payment(
            uow,
            booking_id=booking.id,
            payer_id=principal.user_id,
            amount=booking.total_amount,
            currency=booking.currency,
            provider_name=deps.payments.provider.name,
        )
        uow.defer(repository.SET_PAYMENT, {"id": booking_id, "payment_id": payment.id})
        await repository.set_step(
            uow,
            booking_id,
            SagaStep.HELD,
            SagaStep.AUTHORISING,
            count_attempt=True,
            payment_id=payment.id,
            answer_scope=claim.scope if claim else None,
            answer_key=claim.key if claim else None,
        )
    deps.checkpoint("authorising")
    drive = Drive(Driver.LIVE, token=token, claim=claim)
    try:
        # The first pass starts from what this request just wrote: no reload.
        await saga.run(
            runtime,
            deps,
            booking_id,
            drive,
            loaded=(SagaStep.AUTHORISING, Record(booking, payment_id=payment.id), payment),
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
            booking = await repository.read(uow, booking_id)
            payment = await payments.for_booking(uow, booking_id)
        return 200, outcome(runtime.db.sealer, booking, payment, booking.status, "settled by a concurrent process")
    return drive.answer


# ------------------------------------------------------------------ cancellation


async def cancel(
    runtime: Runtime,
    deps: BookingDeps,
    principal: Principal,
    booking_id: uuid.UUID,
    reason: str | None,
    claim: Claim | None,
) -> dict:
    """Cancels a confirmed booking: nights back to inventory, refund by policy (hosts: in full)."""
    async with runtime.db.transaction() as uow:
        if claim is not None:
            await claim.take(uow)
        booking = await repository.lock(uow, booking_id)
        if booking is None or not _may_see(principal, booking):
            raise NotFound(f"No booking {booking_id}")
        by = cancelled_by(is_admin=principal.is_admin, user_id=principal.user_id, host_id=booking.host_id)
        cancellation = BookingRules.of(booking).cancel(by=by, at=runtime.now())
        refund = cancellation.refund
        await inventory.release_booking(uow, stay_of(booking))
        booking = await repository.transition(
            uow,
            booking,
            cancellation.status,
            f"{by}:{principal.user_id}",
            reason or "cancelled",
            refund_amount=refund,
            cancelled_by=by,
        )
        await repository.set_step(uow, booking_id, SagaStep.CONFIRMED, cancellation.saga_step)
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
        await saga.run(runtime, deps, booking_id, Drive(Driver.LIVE))
    return body


# ------------------------------------------------------------------ personal data


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
