"""Hold -> pay -> confirm over HTTP, declines, idempotency, access rules and bad input."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select, update

from staybook.booking.models import BookingHistory, BookingSaga
from staybook.kernel.models import OutboxMessage
from staybook.payments import service as payments
from tests.bookings import START, hold_body, night_counts, payments_of, seed_room_type
from tests.conftest import bearer


@pytest.fixture(params=["postgres", "sqlite"])
def db_settings(request):
    settings = request.getfixturevalue("pg_settings" if request.param == "postgres" else "sqlite_settings")
    return settings.model_copy(update={"payments": settings.payments.model_copy(update={"sandbox_instant": True})})


def key() -> dict:
    return {"Idempotency-Key": uuid.uuid4().hex}


async def test_hold_pay_confirm(db_settings, client_for):
    guest = uuid.uuid4()
    headers = bearer(db_settings, "guest", guest)
    async with client_for(db_settings) as client:
        runtime = client.app.state.runtime
        room = await seed_room_type(runtime, total=1)
        held = await client.post("/api/v1/bookings", json=hold_body(room["room_type_id"]), headers=headers | key())
        assert held.status_code == 201, held.text
        booking = held.json()
        assert booking["status"] == "held" and booking["total"] == {"amount": 20_000, "currency": "EUR"}
        assert [n["amount"] for n in booking["price_breakdown"]] == [10_000, 10_000]
        assert booking["expires_at"] and booking["cancellation_policy"] == "moderate"
        nights = await night_counts(runtime, room["room_type_id"])
        assert nights[START.isoformat()] == (1, 1, 0)

        paid = await client.post(
            f"/api/v1/bookings/{booking['id']}/payment", json={"payment_method": "tok_success"}, headers=headers | key()
        )
        assert paid.status_code == 200, paid.text
        assert paid.json()["outcome"] == "confirmed" and paid.json()["booking"]["status"] == "confirmed"
        assert paid.json()["payment"]["status"] == "captured"
        nights = await night_counts(runtime, room["room_type_id"])
        assert nights[START.isoformat()] == (1, 0, 1)

        again = await client.post(
            f"/api/v1/bookings/{booking['id']}/payment", json={"payment_method": "tok_success"}, headers=headers | key()
        )
        assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
        assert (await night_counts(runtime, room["room_type_id"]))[START.isoformat()] == (1, 0, 1)

        seen = await client.get(
            f"/api/v1/bookings/{booking['id']}", headers=bearer(db_settings, "host", room["host_id"])
        )
        assert seen.status_code == 200 and seen.json()["status"] == "confirmed"
        stranger = await client.get(f"/api/v1/bookings/{booking['id']}", headers=bearer(db_settings, "guest"))
        assert stranger.status_code == 404
        mine = await client.get("/api/v1/me/bookings", headers=headers)
        assert [b["id"] for b in mine.json()["items"]] == [booking["id"]]
        hosts = await client.get(
            "/api/v1/hosts/me/bookings",
            params={"property_id": str(room["property_id"]), "from": START.isoformat()},
            headers=bearer(db_settings, "host", room["host_id"]),
        )
        assert [b["id"] for b in hosts.json()["items"]] == [booking["id"]]

        cancelled = await client.post(f"/api/v1/bookings/{booking['id']}/cancel", json={}, headers=headers)
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        assert cancelled.json()["refund"] == {"amount": 20_000, "currency": "EUR"}  # 60 days ahead: moderate = full
        twice = await client.post(f"/api/v1/bookings/{booking['id']}/cancel", json={}, headers=headers)
        assert twice.status_code == 409 and twice.headers["content-type"] == "application/problem+json"
        nights = await night_counts(runtime, room["room_type_id"])
        assert nights[START.isoformat()] == (1, 0, 0)
        async with runtime.db.session() as session:
            subjects = (await session.scalars(select(OutboxMessage.event_type))).all()
            history = await session.scalar(select(func.count()).select_from(BookingHistory))
        for name in (
            "booking.held",
            "booking.confirmed",
            "booking.cancelled",
            "payment.authorised",
            "payment.captured",
            "payment.refunded",
        ):
            assert name in subjects
        assert history == 3


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("tok_decline", "card_declined"),
        ("tok_insufficient_funds", "insufficient_funds"),
    ],
)
async def test_decline_releases_the_hold(token, reason, db_settings, client_for):
    headers = bearer(db_settings, "guest")
    async with client_for(db_settings) as client:
        runtime = client.app.state.runtime
        room = await seed_room_type(runtime, total=1)
        held = await client.post("/api/v1/bookings", json=hold_body(room["room_type_id"]), headers=headers | key())
        booking = held.json()
        paid = await client.post(
            f"/api/v1/bookings/{booking['id']}/payment", json={"payment_method": token}, headers=headers | key()
        )
        assert paid.status_code == 402, paid.text
        assert paid.json()["reason"].startswith(reason)
        assert (await night_counts(runtime, room["room_type_id"]))[START.isoformat()] == (1, 0, 0)
        state = await client.get(f"/api/v1/bookings/{booking['id']}", headers=headers)
        assert state.json()["status"] == "payment_failed"
        assert (await payments.reconcile(runtime, payments_of(runtime).provider))["balanced"]


async def test_provider_error_is_a_bad_gateway_and_keeps_the_hold(db_settings, client_for):
    """A provider failure is not a decline: 502, the booking stays held, and paying again works."""
    guest = uuid.uuid4()
    headers = bearer(db_settings, "guest", guest)
    async with client_for(db_settings) as client:
        runtime = client.app.state.runtime
        room = await seed_room_type(runtime, total=1)
        held = await client.post("/api/v1/bookings", json=hold_body(room["room_type_id"]), headers=headers | key())
        booking = held.json()
        retry_key = key()
        failed = await client.post(
            f"/api/v1/bookings/{booking['id']}/payment",
            json={"payment_method": "tok_provider_error"},
            headers=headers | retry_key,
        )
        assert failed.status_code == 502, failed.text
        assert failed.headers["content-type"] == "application/problem+json"
        assert failed.json()["type"].endswith("payment-provider-error") and failed.json()["booking_status"] == "held"
        assert (await night_counts(runtime, room["room_type_id"]))[START.isoformat()] == (1, 1, 0)
        state = await client.get(f"/api/v1/bookings/{booking['id']}", headers=headers)
        assert state.json()["status"] == "held"

        # The same key is not bound to the failure: the guest retries it (same body, the provider still fails),
        # then pays with another card under a new key.
        again = await client.post(
            f"/api/v1/bookings/{booking['id']}/payment",
            json={"payment_method": "tok_provider_error"},
            headers=headers | retry_key,
        )
        assert again.status_code == 502 and "idempotent-replayed" not in again.headers
        paid = await client.post(
            f"/api/v1/bookings/{booking['id']}/payment", json={"payment_method": "tok_success"}, headers=headers | key()
        )
        assert paid.status_code == 200, paid.text
        assert paid.json()["booking"]["status"] == "confirmed"
        async with runtime.db.unit_of_work() as uow:
            payment = await payments.for_booking(uow, uuid.UUID(booking["id"]))
        assert payment.status == "captured" and payment.attempts == 3
        assert (await night_counts(runtime, room["room_type_id"]))[START.isoformat()] == (1, 0, 1)
        assert (await payments.reconcile(runtime, payments_of(runtime).provider))["balanced"]


async def test_provider_failing_in_a_row_opens_the_breaker(db_settings, client_for):
    """After `breaker_failures` provider failures in a row, payments fail fast without calling the
    provider (nothing at the sandbox, the booking still held, 502 problem+json); after its moment,
    the next payment goes through."""
    fast = {"breaker_failures": 2, "breaker_open_seconds": 0.5}
    settings = db_settings.model_copy(update={"payments": db_settings.payments.model_copy(update=fast)})
    guest = uuid.uuid4()
    headers = bearer(settings, "guest", guest)
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        room = await seed_room_type(runtime, total=3)
        body = hold_body(room["room_type_id"])
        held = [(await client.post("/api/v1/bookings", json=body, headers=headers | key())).json() for _ in range(3)]
        for booking in held[:2]:
            failed = await client.post(
                f"/api/v1/bookings/{booking['id']}/payment",
                json={"payment_method": "tok_provider_error"},
                headers=headers | key(),
            )
            assert failed.status_code == 502, failed.text
        refused = await client.post(
            f"/api/v1/bookings/{held[2]['id']}/payment", json={"payment_method": "tok_success"}, headers=headers | key()
        )
        assert refused.status_code == 502, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["booking_status"] == "held"
        async with runtime.db.unit_of_work() as uow:
            payment = await payments.for_booking(uow, uuid.UUID(held[2]["id"]))
        assert payment.provider_reference is None
        assert await payments_of(runtime).provider.find(str(payment.id)) is None  # the provider was not called

        await asyncio.sleep(0.6)
        paid = await client.post(
            f"/api/v1/bookings/{held[2]['id']}/payment", json={"payment_method": "tok_success"}, headers=headers | key()
        )
        assert paid.status_code == 200 and paid.json()["outcome"] == "confirmed", paid.text
        assert not payments_of(runtime).breaker.open and payments_of(runtime).breaker.failures == 0


async def test_payment_in_progress_is_not_kept_as_the_keys_answer(db_settings, client_for):
    """A retry that finds an earlier attempt's saga still running gets 409, but the key stays free:
    once that attempt has settled, the same key gets the real outcome, not the stale 409."""
    guest = uuid.uuid4()
    headers = bearer(db_settings, "guest", guest)
    async with client_for(db_settings) as client:
        runtime = client.app.state.runtime
        room = await seed_room_type(runtime, total=1)
        booking = (
            await client.post("/api/v1/bookings", json=hold_body(room["room_type_id"]), headers=headers | key())
        ).json()
        saga = BookingSaga.__table__
        async with runtime.db.unit_of_work() as uow:  # an earlier attempt is authorising
            await uow.session.execute(
                update(saga).where(saga.c.booking_id == uuid.UUID(booking["id"])).values(step="authorising")
            )
        retry_key = key()
        pay_url, card = f"/api/v1/bookings/{booking['id']}/payment", {"payment_method": "tok_success"}
        busy = await client.post(pay_url, json=card, headers=headers | retry_key)
        assert busy.status_code == 409, busy.text
        async with runtime.db.unit_of_work() as uow:  # that attempt gave up without taking money
            await uow.session.execute(
                update(saga).where(saga.c.booking_id == uuid.UUID(booking["id"])).values(step="held")
            )
        paid = await client.post(pay_url, json=card, headers=headers | retry_key)
        assert paid.status_code == 200, paid.text
        assert paid.json()["booking"]["status"] == "confirmed" and "idempotent-replayed" not in paid.headers


async def test_idempotent_replay_and_mismatch(pg_settings, client_for):
    headers = bearer(pg_settings, "guest")
    async with client_for(pg_settings) as client:
        runtime = client.app.state.runtime
        room = await seed_room_type(runtime, total=5)
        body = hold_body(room["room_type_id"])
        same = headers | {"Idempotency-Key": "k-1"}
        first = await client.post("/api/v1/bookings", json=body, headers=same)
        second = await client.post("/api/v1/bookings", json=body, headers=same)
        assert first.status_code == second.status_code == 201
        assert first.json() == second.json() and second.headers["idempotent-replayed"] == "true"
        assert (await night_counts(runtime, room["room_type_id"]))[START.isoformat()] == (5, 1, 0)
        different = await client.post("/api/v1/bookings", json=body | {"guests": 1}, headers=same)
        assert different.status_code == 422
        other_user = await client.post(
            "/api/v1/bookings", json=body, headers=bearer(pg_settings, "guest") | {"Idempotency-Key": "k-1"}
        )
        assert other_user.status_code == 201 and other_user.json()["id"] != first.json()["id"]
        missing = await client.post("/api/v1/bookings", json=body, headers=headers)
        assert missing.status_code == 422


async def test_concurrent_retries_with_one_key_hold_once(pg_settings, client_for):
    """The key is claimed in the hold's own transaction: racing requests with one key wait on the
    first one's uncommitted claim, then replay its answer; a different body is refused (422)."""
    headers = bearer(pg_settings, "guest")
    async with client_for(pg_settings) as client:
        runtime = client.app.state.runtime
        room = await seed_room_type(runtime, total=5)
        body = hold_body(room["room_type_id"])
        same = headers | {"Idempotency-Key": "race-1"}
        answers = await asyncio.gather(*(client.post("/api/v1/bookings", json=body, headers=same) for _ in range(8)))
        assert [a.status_code for a in answers] == [201] * 8, [a.text for a in answers]
        assert len({a.json()["id"] for a in answers}) == 1
        assert sum("idempotent-replayed" not in a.headers for a in answers) == 1
        assert (await night_counts(runtime, room["room_type_id"]))[START.isoformat()] == (5, 1, 0)

        other = headers | {"Idempotency-Key": "race-2"}
        mixed = await asyncio.gather(
            client.post("/api/v1/bookings", json=body, headers=other),
            client.post("/api/v1/bookings", json=body | {"guests": 1}, headers=other),
        )
        assert sorted(a.status_code for a in mixed) == [201, 422], [a.text for a in mixed]
        assert (await night_counts(runtime, room["room_type_id"]))[START.isoformat()] == (5, 2, 0)

        booking_id = answers[0].json()["id"]
        pay = headers | {"Idempotency-Key": "race-pay"}
        paid = await asyncio.gather(
            *(
                client.post(
                    f"/api/v1/bookings/{booking_id}/payment", json={"payment_method": "tok_success"}, headers=pay
                )
                for _ in range(4)
            )
        )
        # One payment; the others replay its answer or find the key still in use (409, retry shortly).
        assert sorted(a.status_code for a in paid).count(200) >= 1
        assert all(a.status_code in (200, 409) for a in paid), [a.text for a in paid]
        assert sum(a.status_code == 200 and "idempotent-replayed" not in a.headers for a in paid) == 1
        assert (await payments.reconcile(runtime, payments_of(runtime).provider))["balanced"]


async def test_bad_input_leaves_inventory_untouched(pg_settings, client_for):
    guest = uuid.uuid4()
    headers = bearer(pg_settings, "guest", guest)
    async with client_for(pg_settings) as client:
        runtime = client.app.state.runtime
        room = await seed_room_type(runtime, total=2, max_guests=2)
        archived = await seed_room_type(runtime, total=2, status="archived")
        rt = room["room_type_id"]
        cases = [
            hold_body(rt, check_in=date.today() - timedelta(days=2)),
            hold_body(rt) | {"guests": 0},
            hold_body(rt, guests=3),
            hold_body(rt) | {"check_out": START.isoformat()},
            hold_body(rt) | {"check_out": (START - timedelta(days=1)).isoformat()},
            hold_body(rt, nights=31),
            hold_body(uuid.uuid4()),
            hold_body(archived["room_type_id"]),
            hold_body(rt) | {"surprise": 1},
        ]
        for body in cases:
            response = await client.post("/api/v1/bookings", json=body, headers=headers | key())
            assert 400 <= response.status_code < 500, (body, response.text)
            assert response.headers["content-type"] == "application/problem+json"
        assert all(held == 0 for _, held, _ in (await night_counts(runtime, rt)).values())

        booking = (await client.post("/api/v1/bookings", json=hold_body(rt), headers=headers | key())).json()
        other = await client.post(
            f"/api/v1/bookings/{booking['id']}/payment",
            json={"payment_method": "tok_success"},
            headers=bearer(pg_settings, "guest") | key(),
        )
        assert other.status_code == 404 and other.headers["content-type"] == "application/problem+json"
        card = await client.post(
            f"/api/v1/bookings/{booking['id']}/payment",
            json={"payment_method": "4242424242424242"},
            headers=headers | key(),
        )
        assert card.status_code == 422
        not_confirmed = await client.post(f"/api/v1/bookings/{booking['id']}/cancel", json={}, headers=headers)
        assert not_confirmed.status_code == 409
        assert (await night_counts(runtime, rt))[START.isoformat()] == (2, 1, 0)
