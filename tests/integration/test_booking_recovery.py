"""Recovery when the money was taken but the hold is gone: the payment is refunded, never kept."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from staybook.booking import jobs, saga, service
from staybook.booking.models import Booking, BookingSaga
from staybook.booking.ports import BookingDeps
from staybook.booking.schemas import HoldRequest
from staybook.inventory import service as inventory
from staybook.kernel.runtime import Wiring
from staybook.kernel.security import Principal
from staybook.payments import service as payments
from staybook.payments.models import Payment
from tests.bookings import START, hold_body, night_counts, payments_of, seed_room_type


class Crash(BaseException):
    """Stands in for kill -9: nothing after the checkpoint runs."""


@pytest.fixture
def crash_at():
    """`crash_at(runtime, step)`: the runtime's booking deps with a checkpoint that crashes at `step`."""

    def deps_crashing_at(runtime, step: str) -> BookingDeps:
        def hook(name: str) -> None:
            if name == step:
                raise Crash(name)

        return BookingDeps(payments_of(runtime), checkpoint=hook)

    return deps_crashing_at


@pytest.fixture(params=["pg_settings", "sqlite_settings"])
def db_settings(request):
    return request.getfixturevalue(request.param)


async def test_captured_after_the_hold_ended_is_refunded(db_settings, make_runtime, crash_at):
    settings = db_settings.model_copy(
        update={"payments": db_settings.payments.model_copy(update={"sandbox_instant": True})}
    )
    runtime = await make_runtime(settings, Wiring())
    room = await seed_room_type(runtime, total=1)
    guest = Principal(uuid.uuid4(), "guest")
    held = await service.place_hold(runtime, guest, HoldRequest(**hold_body(room["room_type_id"])), None)
    booking_id = uuid.UUID(held["id"])
    deps = crash_at(runtime, "captured-at-provider")
    with pytest.raises(Crash):
        await service.pay(runtime, deps, guest, booking_id, "tok_success", None)

    # While the process was down an operator ended the hold and the nights went back on sale.
    async with runtime.db.unit_of_work() as uow:
        booking = await uow.session.get(Booking, booking_id)
        await inventory.release_hold(uow, saga.stay_of(booking))
        booking.status = "expired"

    assert await jobs.recover(runtime, deps, grace_seconds=0) == 1
    async with runtime.db.session() as session:
        saga_row = await session.get(BookingSaga, booking_id)
        payment = await session.scalar(select(Payment).where(Payment.booking_id == booking_id))
    assert saga_row.step == "compensated"
    assert (payment.status, payment.refunded_amount) == ("refunded", payment.amount)
    assert (await night_counts(runtime, room["room_type_id"]))[START.isoformat()] == (1, 0, 0)
    assert (await payments.reconcile(runtime, payments_of(runtime).provider))["balanced"]
