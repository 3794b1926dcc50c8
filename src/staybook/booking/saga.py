"""The payment saga's runs: the I/O that `domain`'s decisions ask for (docs/booking-saga.md).

Payment calls happen between units of work, never inside one: record the intent, call the
provider, apply the result in a new transaction, compensate when the booking can no longer be
honoured. A crash between any two steps leaves a saga step the recovery pass finishes or undoes.
Three drivers run a saga (`domain.Driver`): the live payment request, a provider webhook and
the recovery pass; each run advances it until a terminal step or until it has to wait.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from staybook.booking import metrics, repository
from staybook.booking.domain import (
    INTERRUPTED,
    LIFECYCLE,
    Booking,
    BookingStatus,
    Driver,
    HoldExpired,
    Next,
    PaymentDeclined,
    ProviderUnavailable,
    SagaStep,
    Trouble,
    after_refund,
    decide,
    decline_reason,
    provider_trouble,
    refund_owed,
    settle_capture,
)
from staybook.booking.events import BookingConfirmed, BookingPaymentFailed
from staybook.booking.ports import BookingDeps
from staybook.booking.views import outcome, snapshot
from staybook.inventory import service as inventory
from staybook.inventory.service import Stay
from staybook.kernel.db import UnitOfWork
from staybook.kernel.errors import StaybookError, problem_body
from staybook.kernel.idempotency import Claim, record_if_unanswered
from staybook.kernel.orm import utcnow
from staybook.kernel.runtime import Runtime
from staybook.payments import service as payments
from staybook.payments.provider import ChargeState, CircuitOpen, ProviderError, ProviderTimeout

# What repository.CONFIRM sets when the booking is still held: the lifecycle's held -> confirmed.
_CONFIRMED = LIFECYCLE.require(BookingStatus.HELD, BookingStatus.CONFIRMED)


def stay_of(booking) -> Stay:
    return Stay(booking.room_type_id, booking.check_in, booking.check_out, booking.units)


@dataclass
class Drive:
    """One saga run: its driver, and what the live request brings and takes back."""

    driver: Driver
    token: str | None = None
    claim: Claim | None = None
    answer: tuple[int, dict] | None = None
    # A webhook run captures only an authorisation it applied itself; otherwise the live
    # request that recorded the authorisation is capturing it right now.
    applied_authorisation: bool = False
    # (scope, key) of the payment request's Idempotency-Key, for webhook and recovery runs.
    answer_to: tuple[str, str] | None = None

    @property
    def live(self) -> bool:
        return self.driver is Driver.LIVE


async def _load(runtime: Runtime, booking_id: uuid.UUID):
    """The saga's step, the booking and its payment (two reads, no transaction needed)."""
    async with runtime.db.transaction(autocommit=True) as uow:
        booking = await uow.fetchrow(repository.SAGA_STATE, {"id": booking_id})
        if booking is None:
            return None, None, None
        payment = await payments.get(uow, booking.saga_payment_id) if booking.saga_payment_id else None
    return booking.saga_step, booking, payment


async def run(
    runtime: Runtime, deps: BookingDeps, booking_id: uuid.UUID, drive: Drive, loaded: tuple | None = None
) -> None:
    """Advances the saga until it reaches a terminal step or has to wait for the provider.

    `loaded` (step, booking, payment) spares the first pass its read when the caller just wrote them.
    A live request stops as soon as it has its answer: the step it reached is terminal.
    """
    for _ in range(20):  # each pass moves at least one step or returns; 20 is far more than the longest path
        if drive.live and drive.answer is not None:
            return
        step, booking, payment = loaded if loaded is not None else await _load(runtime, booking_id)
        loaded = None
        if not drive.live and booking is not None and booking.answer_key is not None:
            drive.answer_to = (booking.answer_scope, booking.answer_key)
        try:
            if not await _advance(runtime, deps, step, booking, payment, drive):
                return
        except repository.StepTaken:
            continue
        except ProviderError as error:
            async with runtime.db.transaction() as uow:
                await repository.note_attempt(uow, booking_id, str(error))
            trouble = provider_trouble(drive.driver, timeout=isinstance(error, ProviderTimeout))
            if trouble is Trouble.ANSWER_PENDING:
                drive.answer = (
                    202,
                    outcome(
                        runtime.db.sealer,
                        booking,
                        payment,
                        "pending",
                        "The payment provider has not answered yet; the booking stays held until it does.",
                    ),
                )
                await _record_answer(runtime, drive)
            elif trouble is Trouble.GIVE_UP:
                raise
            return


async def _advance(runtime, deps: BookingDeps, step, booking, payment, drive: Drive) -> bool:
    """One pass at `step`; False when there is nothing for this run to do now."""
    if step == SagaStep.AUTHORISING:
        return await _authorise(runtime, deps, booking, payment, drive)
    if step == SagaStep.CAPTURING:
        return await _capture(runtime, deps, booking, payment, drive)
    provider = deps.payments.provider
    decision = decide(step, drive.driver)
    if decision is Next.VOID_AT_PROVIDER:
        charge = await provider.void(payment.provider_reference, idempotency_key=f"{payment.id}:void")
        await _finish_void(runtime, booking.id, charge, drive)
        return True
    if decision is Next.REFUND:
        amount = refund_owed(step, paid=payment.amount, by_policy=booking.refund_amount)
        deps.checkpoint(step)
        charge = await provider.refund(
            payment.provider_reference, amount=amount, idempotency_key=f"{payment.id}:refund"
        )
        await _finish_refund(runtime, booking.id, SagaStep(step), charge, drive)
        return True
    return False


async def _authorise(runtime, deps: BookingDeps, booking, payment, drive: Drive) -> bool:
    """Step AUTHORISING -> CAPTURING (authorised) or FAILED (declined). False: nothing to do now."""
    provider, checkpoint = deps.payments.provider, deps.checkpoint
    charge: ChargeState | None = None
    decision = decide(SagaStep.AUTHORISING, drive.driver, payment=payment.status)
    if decision is Next.WAIT:
        return False
    if decision is Next.AUTHORISE:
        breaker = deps.payments.breaker
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
            if provider_trouble(drive.driver, timeout=False, authorising=True) is Trouble.BACK_TO_HELD:
                await _back_to_held(runtime, booking.id, payment, f"provider error: {error}")
            raise ProviderUnavailable(
                "The payment provider failed before charging anything; the booking is still held, "
                "so the payment can be tried again until the hold expires.",
                booking_id=str(booking.id),
                booking_status=BookingStatus.HELD,
                expires_at=booking.expires_at.isoformat(),
            ) from error
        breaker.succeeded()
        checkpoint("authorised-at-provider")
    elif decision is Next.ASK_PROVIDER:
        charge = await provider.find(str(payment.id))
    if decision in (Next.AUTHORISE, Next.ASK_PROVIDER):
        decision = decide(
            SagaStep.AUTHORISING,
            drive.driver,
            payment=payment.status,
            charge=charge.status if charge is not None else None,
            asked=True,
        )
    if decision is Next.FAIL_INTERRUPTED:
        await _fail(runtime, booking.id, SagaStep.AUTHORISING, payment, INTERRUPTED, drive)
        return True
    if decision is Next.FAIL_DECLINED:
        reason = decline_reason(charge.decline_code if charge else None)
        await _fail(runtime, booking.id, SagaStep.AUTHORISING, payment, reason, drive, charge=charge)
        return True
    if decision is Next.CAPTURE:
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
                await repository.set_step(uow, booking.id, SagaStep.AUTHORISING, SagaStep.CAPTURING)
            raise
        checkpoint("captured-at-provider")
        await _finish_capture(
            runtime, booking.id, captured, payment, drive, expected=SagaStep.AUTHORISING, authorisation=charge
        )
        return True
    # RECORD_AUTHORISATION: a webhook or recovery brought the authorisation; the next pass captures or voids.
    async with runtime.db.transaction() as uow:
        if charge is not None:
            await payments.record(uow, payment.id, "authorised", charge=charge)
        await repository.set_step(uow, booking.id, SagaStep.AUTHORISING, SagaStep.CAPTURING)
    drive.applied_authorisation = True
    checkpoint("capturing")
    return True


async def _back_to_held(runtime, booking_id: uuid.UUID, payment, reason: str) -> None:
    """The saga returns to `held` (the payment stays pending, to be tried again with the same
    idempotency key at the provider); one transaction."""
    async with runtime.db.transaction() as uow:
        await payments.note_error(uow, payment.id, reason)
        await repository.set_step(uow, booking_id, SagaStep.AUTHORISING, SagaStep.HELD, last_error=reason[:2000])


async def _capture(runtime, deps: BookingDeps, booking, payment, drive: Drive) -> bool:
    """Step CAPTURING -> CONFIRMED, or REFUNDING/VOIDING when the booking cannot be honoured."""
    provider = deps.payments.provider
    facts = {"payment": payment.status, "booking": booking.status, "applied_authorisation": drive.applied_authorisation}
    decision = decide(SagaStep.CAPTURING, drive.driver, **facts)
    charge: ChargeState | None = None
    if decision is Next.ASK_PROVIDER:
        # A crash after authorising: ask the provider whether the capture happened.
        charge = await provider.find(str(payment.id))
        found = charge.status if charge is not None else None
        decision = decide(SagaStep.CAPTURING, drive.driver, charge=found, asked=True, **facts)
    if decision is Next.WAIT:
        return False
    if decision is Next.VOID:
        async with runtime.db.transaction() as uow:
            await repository.set_step(uow, booking.id, SagaStep.CAPTURING, SagaStep.VOIDING)
        return True
    if decision is Next.CAPTURE:
        charge = await provider.capture(
            payment.provider_reference, amount=payment.amount, idempotency_key=f"{payment.id}:capture"
        )
        deps.checkpoint("captured-at-provider")
    await _finish_capture(runtime, booking.id, charge, payment, drive)
    return True


async def _finish_capture(
    runtime,
    booking_id,
    charge: ChargeState | None,
    payment,
    drive: Drive,
    *,
    expected: SagaStep = SagaStep.CAPTURING,
    authorisation: ChargeState | None = None,
) -> None:
    """One transaction: payment captured, and booking confirmed (held -> booked) or refund scheduled."""
    async with runtime.db.transaction() as uow:
        # One conditional UPDATE locks the booking and confirms it if it is still held.
        confirmed = {"id": booking_id, "status": _CONFIRMED, "updated_at": utcnow()}
        booking = await uow.fetchrow(repository.CONFIRM, confirmed)
        if authorisation is not None:
            await payments.record(uow, payment.id, "authorised", charge=authorisation)
        captured = await payments.record(uow, payment.id, "captured", charge=charge)
        still_held = booking is not None
        if still_held:
            await inventory.confirm_hold(uow, stay_of(booking))
            repository.history(uow, booking_id, BookingStatus.HELD, booking.status, "saga", "payment captured")
        await repository.set_step(uow, booking_id, expected, settle_capture(still_held))
        if still_held:
            uow.emit(BookingConfirmed(booking=snapshot(booking), payment_id=payment.id))
            metrics.BOOKINGS.labels("confirmed").inc()
            metrics.BOOKING_VALUE.labels(booking.currency).inc(booking.total_amount)
            detail = "Payment captured; the booking is confirmed."
            await _answer(uow, drive, 200, outcome(runtime.db.sealer, booking, captured, "confirmed", detail))


async def _fail(runtime, booking_id, expected_step: SagaStep, payment, reason: str, drive: Drive, charge=None) -> None:
    """Payment failed: record it, release the hold, booking payment_failed; one transaction."""
    async with runtime.db.transaction() as uow:
        booking = await repository.lock(uow, booking_id)
        failed = await payments.record(uow, payment.id, "failed", charge=charge, reason=reason)
        status = Booking.of(booking).fail_payment()
        if status is not None:
            await inventory.release_hold(uow, stay_of(booking))
            booking = await repository.transition(uow, booking, status, "saga", reason, failure_reason=reason)
            uow.emit(BookingPaymentFailed(booking=snapshot(booking), reason=reason))
            metrics.BOOKINGS.labels("payment_failed").inc()
        await repository.set_step(uow, booking_id, expected_step, SagaStep.FAILED)
        error = PaymentDeclined(
            f"The payment was declined ({reason}); the hold is released.",
            booking_id=str(booking_id),
            reason=reason,
            booking_status=booking.status,
        )
        await _answer(uow, drive, 402, {**_problem(error), "payment": failed.status})


async def _answer(uow: UnitOfWork, drive: Drive, status: int, body: dict) -> None:
    """The payment request's answer, stored with the change that produced it.

    A live request answers it and records it under its Idempotency-Key. A webhook or the
    recovery pass finishing a saga whose request died (or gave up waiting) records it under
    that request's key if no answer is stored there yet: a retry with the key then gets
    this first outcome, not a new reading of the booking.
    """
    if drive.live:
        drive.answer = (status, body)
        if drive.claim is not None:
            drive.claim.record(uow, status, body)
    elif drive.answer_to is not None:
        await record_if_unanswered(uow, *drive.answer_to, status, body)


async def _record_answer(runtime: Runtime, drive: Drive) -> None:
    """Stores the live answer unless a webhook already answered under the key; then that is the answer."""
    if drive.claim is not None and drive.answer is not None:
        async with runtime.db.transaction() as uow:
            claim = drive.claim
            if not await record_if_unanswered(uow, claim.scope, claim.key, *drive.answer):
                drive.answer = await claim.stored_answer(uow) or drive.answer


def _problem(error: StaybookError) -> dict:
    return problem_body(error.status, error.code, error.title, error.detail, None, **error.extensions)


async def _finish_void(runtime, booking_id, charge: ChargeState, drive: Drive) -> None:
    """Authorised but never captured: the authorisation is voided, the booking fails and frees its nights."""
    async with runtime.db.transaction() as uow:
        booking = await repository.lock(uow, booking_id)
        voided = await payments.record(uow, booking.payment_id, "voided", charge=charge)
        status = Booking.of(booking).fail_payment()
        if status is not None:
            await inventory.release_hold(uow, stay_of(booking))
            booking = await repository.transition(
                uow,
                booking,
                status,
                "saga",
                "authorised payment voided after an interruption",
                failure_reason="payment voided",
            )
            uow.emit(BookingPaymentFailed(booking=snapshot(booking), reason="payment voided"))
            metrics.BOOKINGS.labels("payment_failed").inc()
        await repository.set_step(uow, booking_id, SagaStep.VOIDING, SagaStep.COMPENSATED)
        error = HoldExpired("The hold ended before the payment completed; the authorisation was voided.")
        await _answer(uow, drive, 409, {**_problem(error), "payment": voided.status})


async def _finish_refund(runtime, booking_id, step: SagaStep, charge: ChargeState, drive: Drive) -> None:
    async with runtime.db.transaction() as uow:
        booking = await repository.read(uow, booking_id)
        refunded = await payments.record(uow, booking.payment_id, "refunded", charge=charge)
        await repository.set_step(uow, booking_id, step, after_refund(step))
        if step is SagaStep.REFUNDING:
            error = HoldExpired("The hold ended before the payment completed; the payment was refunded.")
            await _answer(uow, drive, 409, {**_problem(error), "payment": refunded.status})


async def on_payment_settled(runtime: Runtime, deps: BookingDeps, booking_id: uuid.UUID) -> None:
    """A webhook moved this booking's payment: continue a saga that was waiting for the provider."""
    await run(runtime, deps, booking_id, Drive(Driver.WEBHOOK))
