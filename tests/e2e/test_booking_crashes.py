"""kill -9 of the API at each step of the payment saga, then the recovery pass: always consistent.

After recovery a booking is either confirmed with its payment captured and its nights
booked, or payment_failed with nothing charged and its nights free; and staybook's
payments agree with the provider's ledger.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select

from staybook.booking import jobs
from staybook.booking.models import Booking, BookingSaga
from staybook.kernel.runtime import Wiring
from staybook.payments import service as payments
from staybook.payments.models import Payment
from tests.bookings import START, booking_deps, hold_body, night_counts, payments_of, seed_room_type
from tests.conftest import bearer
from tests.contract import checked_async_client
from tests.servers import servers

pytestmark = pytest.mark.e2e

EXPECTED = {
    "authorising": ("payment_failed", "failed"),  # the provider never saw it
    "authorised-at-provider": ("payment_failed", "voided"),  # authorised, never captured: void
    "captured-at-provider": ("confirmed", "captured"),  # captured: nights still held, confirm
}
# What the killed payment request would have answered; recovery stores it under the request's key.
ANSWER = {"authorising": 402, "authorised-at-provider": 409, "captured-at-provider": 200}


@pytest.mark.parametrize("step", list(EXPECTED))
async def test_crash_at_each_saga_step_recovers(step, pg_settings, make_runtime, client_for):
    settings = pg_settings.model_copy(
        update={"payments": pg_settings.payments.model_copy(update={"sandbox_instant": True})}
    )
    runtime = await make_runtime(settings, Wiring())
    room = await seed_room_type(runtime, total=1)
    guest = uuid.uuid4()
    headers = bearer(settings, "guest", guest)
    with servers(settings, env={"STAYBOOK_TEST_FAULT": step}) as (server,):
        async with checked_async_client(server.url, timeout=30) as client:
            held = await client.post(
                "/api/v1/bookings", json=hold_body(room["room_type_id"]), headers=headers | {"Idempotency-Key": "a"}
            )
            booking_id = held.json()["id"]
            with pytest.raises(httpx.TransportError):
                await client.post(
                    f"/api/v1/bookings/{booking_id}/payment",
                    json={"payment_method": "tok_success"},
                    headers=headers | {"Idempotency-Key": "b"},
                )
        server.process.wait(10)
        assert server.process.returncode == -9

    assert await jobs.recover(runtime, booking_deps(runtime), grace_seconds=0) == 1
    status, payment_status = EXPECTED[step]
    async with runtime.db.session() as session:
        booking = await session.get(Booking, uuid.UUID(booking_id))
        saga = await session.get(BookingSaga, booking.id)
        payment = await session.scalar(select(Payment).where(Payment.booking_id == booking.id))
    assert (booking.status, payment.status) == (status, payment_status)
    assert saga.step in ("confirmed", "failed", "compensated")
    booked = 1 if status == "confirmed" else 0
    assert (await night_counts(runtime, room["room_type_id"]))[START.isoformat()] == (1, 0, booked)
    assert (await payments.reconcile(runtime, payments_of(runtime).provider))["balanced"]
    assert await jobs.recover(runtime, booking_deps(runtime), grace_seconds=0) == 0

    # The guest's retry with the same Idempotency-Key gets the stored outcome, not a new reading.
    async with client_for(settings) as client:
        retry = await client.post(
            f"/api/v1/bookings/{booking_id}/payment",
            json={"payment_method": "tok_success"},
            headers=headers | {"Idempotency-Key": "b"},
        )
    assert retry.status_code == ANSWER[step], retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    answered = retry.json()
    assert answered.get("booking", {}).get("status", answered.get("booking_status", status)) == status
