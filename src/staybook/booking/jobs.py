"""The booking context's periodic jobs: hold expiry and saga recovery (docs/booking-saga.md)."""

from __future__ import annotations

from datetime import timedelta

import structlog

from staybook.booking import metrics, repository
from staybook.booking.domain import Booking, Driver, SagaStep
from staybook.booking.events import BookingExpired
from staybook.booking.ports import BookingDeps
from staybook.booking.saga import Drive, run, stay_of
from staybook.booking.views import snapshot
from staybook.inventory import service as inventory
from staybook.kernel.orm import utcnow
from staybook.kernel.runtime import PeriodicJob, Runtime
from staybook.payments import service as payments

log = structlog.get_logger("staybook.booking")


async def expire_holds(runtime: Runtime) -> int:
    """Expires one batch of held bookings past their deadline and releases their nights.

    `FOR UPDATE SKIP LOCKED`: several workers take disjoint batches, and a booking whose
    payment is being opened (row locked by the payer) is skipped, not waited for. Only
    sagas still at `held` expire; one with a payment in flight is the recovery pass's.
    """
    async with runtime.db.unit_of_work() as uow:
        bookings = await repository.lock_expired_holds(uow, runtime.now(), runtime.settings.booking.expiry_batch_size)
        for booking in bookings:
            await inventory.release_hold(uow, stay_of(booking))
            if booking.payment_id is not None:  # a payment the provider failed on, never retried
                await payments.record(uow, booking.payment_id, "failed", reason="hold expired")
            booking = await repository.transition(uow, booking, Booking.of(booking).expire(), "worker", "hold expired")
            await repository.set_step(uow, booking.id, SagaStep.HELD, SagaStep.EXPIRED)
            uow.emit(BookingExpired(booking=snapshot(booking)))
            metrics.BOOKINGS.labels("expired").inc()
    if bookings:
        log.info("expired holds", context={"count": len(bookings)})
    return len(bookings)


async def recover(runtime: Runtime, deps: BookingDeps, *, grace_seconds: float | None = None) -> int:
    """Finishes or undoes sagas left mid-way by a crash (no progress for the grace period).

    Captured but not confirmed -> confirm if the nights are still held, else refund;
    authorised but not captured -> void; never reached the provider -> payment failed.
    """
    grace = runtime.settings.booking.recovery_grace_seconds if grace_seconds is None else grace_seconds
    async with runtime.db.session() as session:
        stuck = await repository.stuck_sagas(
            session, utcnow(), timedelta(seconds=grace), runtime.settings.booking.recovery_batch_size
        )
    for booking_id in stuck:
        try:
            await run(runtime, deps, booking_id, Drive(Driver.RECOVERY))
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
    PeriodicJob("booking.recover-sagas", 30, lambda runtime, deps: recover(runtime, deps)),
]
