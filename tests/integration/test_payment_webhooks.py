"""Provider webhooks: a late success after a timeout, duplicates, stale events, forgeries."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
from sqlalchemy import func, select

from staybook.kernel.models import OutboxMessage
from staybook.payments import service as payments
from staybook.payments.models import SandboxWebhook
from staybook.payments.sandbox import SIGNATURE_HEADER, sign
from tests.bookings import START, hold_body, night_counts, payments_of, seed_room_type
from tests.conftest import bearer


def realistic(settings, *, provider_timeout_seconds: float = 0.3):
    """The sandbox answering over its own ledger with webhooks; a short client timeout for the
    timeout tests, a generous one where an answer in time is what the test needs (loaded CI)."""
    return settings.model_copy(
        update={
            "payments": settings.payments.model_copy(
                update={
                    "sandbox_instant": False,
                    "sandbox_latency_ms": 0,
                    "provider_timeout_seconds": provider_timeout_seconds,
                }
            )
        }
    )


async def _book(client, settings, headers, room) -> str:
    held = await client.post(
        "/api/v1/bookings",
        json=hold_body(room["room_type_id"]),
        headers=headers | {"Idempotency-Key": uuid.uuid4().hex},
    )
    assert held.status_code == 201, held.text
    return held.json()["id"]


async def _wait_status(client, headers, booking_id, wanted, seconds=10.0) -> dict:
    """Polls the booking while doing what the worker's webhook job does (this app runs no worker)."""
    provider = payments_of(client.app.state.runtime).provider
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await provider.deliver_pending()
        booking = (await client.get(f"/api/v1/bookings/{booking_id}", headers=headers)).json()
        if booking["status"] == wanted:
            return booking
        await asyncio.sleep(0.05)
    raise AssertionError(f"booking stayed {booking['status']}, wanted {wanted}")


async def test_timeout_then_late_success_webhook_confirms(pg_settings, client_for):
    settings = realistic(pg_settings)
    headers = bearer(settings, "guest")
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        payments_of(runtime).provider.client = client
        room = await seed_room_type(runtime, total=1)
        booking_id = await _book(client, settings, headers, room)
        paid = await client.post(
            f"/api/v1/bookings/{booking_id}/payment",
            json={"payment_method": "tok_timeout"},
            headers=headers | {"Idempotency-Key": "pay-1"},
        )
        assert paid.status_code == 202, paid.text
        assert paid.json()["outcome"] == "pending" and paid.json()["booking"]["status"] == "held"
        await _wait_status(client, headers, booking_id, "confirmed")
        assert (await night_counts(runtime, room["room_type_id"]))[START.isoformat()] == (1, 0, 1)
        replay = await client.post(
            f"/api/v1/bookings/{booking_id}/payment",
            json={"payment_method": "tok_timeout"},
            headers=headers | {"Idempotency-Key": "pay-1"},
        )
        assert replay.status_code == 202 and replay.headers["idempotent-replayed"] == "true"
        report = await payments.reconcile(runtime, payments_of(runtime).provider)
        assert report["balanced"], report


async def test_duplicate_stale_and_forged_webhooks(pg_settings, client_for):
    settings = realistic(pg_settings, provider_timeout_seconds=10)
    headers = bearer(settings, "guest")
    secret = settings.payments.webhook_secret.get_secret_value().encode()
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        provider = payments_of(runtime).provider
        provider.client = client
        room = await seed_room_type(runtime, total=1)
        booking_id = await _book(client, settings, headers, room)
        paid = await client.post(
            f"/api/v1/bookings/{booking_id}/payment",
            json={"payment_method": "tok_success"},
            headers=headers | {"Idempotency-Key": "pay"},
        )
        assert paid.status_code == 200 and paid.json()["outcome"] == "confirmed"
        deadline = time.monotonic() + 10
        while True:
            await provider.deliver_pending()
            async with runtime.db.session() as session:
                pending = await session.scalar(
                    select(func.count()).select_from(SandboxWebhook).where(SandboxWebhook.delivered_at.is_(None))
                )
            if not pending or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        async with runtime.db.session() as session:
            sent = {w.event_type: w.payload for w in (await session.scalars(select(SandboxWebhook))).all()}
            events_before = await session.scalar(select(func.count()).select_from(OutboxMessage))
        assert set(sent) == {"charge.authorised", "charge.captured"}

        def signed(payload: dict, *, at: int | None = None, key: bytes = secret) -> dict:
            body = orjson.dumps(payload)
            return {
                "content": body,
                "headers": {
                    "content-type": "application/json",
                    SIGNATURE_HEADER: sign(key, at or int(time.time()), body),
                },
            }

        url = "/api/v1/payments/webhooks/sandbox"
        duplicate = await client.post(url, **signed(sent["charge.captured"]))
        assert duplicate.status_code == 200 and duplicate.json()["outcome"] == "duplicate"
        stale = dict(sent["charge.authorised"], id="evt_late_redelivery")
        late = await client.post(url, **signed(stale))
        assert late.status_code == 200 and late.json()["outcome"] == "applied"

        forged = await client.post(url, **signed(sent["charge.captured"] | {"id": "evt_x"}, key=b"wrong"))
        assert forged.status_code == 400 and forged.headers["content-type"] == "application/problem+json"
        old = await client.post(url, **signed(sent["charge.captured"] | {"id": "evt_y"}, at=int(time.time()) - 3600))
        assert old.status_code == 400
        unsigned = await client.post(url, content=orjson.dumps(sent["charge.captured"]))
        assert unsigned.status_code == 400
        unknown = await client.post("/api/v1/payments/webhooks/stripe", **signed(sent["charge.captured"]))
        assert unknown.status_code == 404

        booking = (await client.get(f"/api/v1/bookings/{booking_id}", headers=headers)).json()
        assert booking["status"] == "confirmed"
        async with runtime.db.session() as session:
            events_after = await session.scalar(select(func.count()).select_from(OutboxMessage))
        assert events_after == events_before  # nothing stale or forged produced an event
        assert (await night_counts(runtime, room["room_type_id"]))[START.isoformat()] == (1, 0, 1)
        assert (await payments.reconcile(runtime, payments_of(runtime).provider))["balanced"]


async def test_webhooks_are_rate_limited_per_provider_and_address(pg_settings, client_for):
    settings = pg_settings.model_copy(
        update={
            "payments": pg_settings.payments.model_copy(
                update={"webhook_rate_limit_requests": 3, "webhook_rate_limit_window_seconds": 3600}
            ),
            "gateway": pg_settings.gateway.model_copy(update={"trusted_proxies": ["127.0.0.1/32"]}),
        }
    )
    url = "/api/v1/payments/webhooks/sandbox"

    def forged(address: str) -> dict:
        return {
            "content": b"{}",
            "headers": {
                "content-type": "application/json",
                SIGNATURE_HEADER: "t=1,v1=00",
                "x-forwarded-for": address,
            },
        }

    async with client_for(settings) as client:
        answers = [(await client.post(url, **forged("203.0.113.7"))).status_code for _ in range(3)]
        assert answers == [400, 400, 400]
        limited = await client.post(url, **forged("203.0.113.7"))
        assert limited.status_code == 429, limited.text
        assert limited.headers["content-type"] == "application/problem+json"
        assert int(limited.headers["retry-after"]) > 0
        # Another source address has its own allowance; so would another provider.
        other = await client.post(url, **forged("203.0.113.8"))
        assert other.status_code == 400


async def _owed_webhooks(runtime) -> int:
    async with runtime.db.unit_of_work() as uow:
        return await uow.session.scalar(
            select(func.count()).select_from(SandboxWebhook).where(SandboxWebhook.delivered_at.is_(None))
        )


async def test_an_api_process_owes_webhooks_and_the_worker_delivers_them_on_one_client(pg_settings, client_for):
    """API processes only write what the sandbox owes; deliveries are the worker's, on one shared
    client (a client per delivery, inside the API processes, was the collapse under load)."""
    settings = realistic(pg_settings, provider_timeout_seconds=10)
    assert not settings.run_worker_in_process
    headers = bearer(settings, "guest")
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        provider = payments_of(runtime).provider
        provider.client = client  # where an inline delivery from this process would succeed
        room = await seed_room_type(runtime, total=2)
        for key in ("pay-a", "pay-b"):
            booking_id = await _book(client, settings, headers, room)
            paid = await client.post(
                f"/api/v1/bookings/{booking_id}/payment",
                json={"payment_method": "tok_success"},
                headers=headers | {"Idempotency-Key": key},
            )
            assert paid.status_code == 200, paid.text
        await asyncio.sleep(0.3)  # an inline delivery, if there were one, would have run by now
        assert await _owed_webhooks(runtime) >= 2
        # Without a client set, the worker's job posts to the configured URL, where nothing
        # listens: each attempt fails, on the same client every time.
        provider.client = None
        await provider.deliver_pending()
        first_client = provider._own_client
        assert first_client is not None
        async with runtime.db.unit_of_work() as uow:
            await uow.session.execute(
                SandboxWebhook.__table__.update().values(next_attempt_at=func.now() - func.make_interval(0, 0, 0, 0, 1))
            )
        await provider.deliver_pending()
        assert provider._own_client is first_client
        # Pointed at the app, the worker's job delivers everything owed.
        provider.client = client
        async with runtime.db.unit_of_work() as uow:
            await uow.session.execute(
                SandboxWebhook.__table__.update().values(next_attempt_at=func.now() - func.make_interval(0, 0, 0, 0, 1))
            )
        await provider.deliver_pending()
        assert await _owed_webhooks(runtime) == 0
