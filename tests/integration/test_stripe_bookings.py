"""Bookings paid through the stripe provider, chosen by settings alone: the saga, the webhook
receiver and reconciliation speak to localstripe as they speak to the sandbox."""

from __future__ import annotations

import uuid

from staybook.payments import service as payments
from tests.bookings import START, hold_body, night_counts, payments_of, seed_room_type
from tests.conftest import bearer
from tests.stripe_server import API_KEY, flush, register_webhook
from tests.webhook_receiver import receiver

SECRET = "whsec_bookings"


def stripe_settings(pg_settings, base: str):
    payments_settings = pg_settings.payments.model_validate(
        pg_settings.payments.model_dump()
        | {"provider": "stripe", "stripe_api_key": API_KEY, "stripe_api_base": base, "webhook_secret": SECRET}
    )
    return pg_settings.model_copy(update={"payments": payments_settings})


async def _hold(client, headers, room) -> str:
    held = await client.post(
        "/api/v1/bookings",
        json=hold_body(room["room_type_id"]),
        headers=headers | {"Idempotency-Key": uuid.uuid4().hex},
    )
    assert held.status_code == 201, held.text
    return held.json()["id"]


async def _pay(client, headers, booking_id: str, token: str):
    return await client.post(
        f"/api/v1/bookings/{booking_id}/payment",
        json={"payment_method": token},
        headers=headers | {"Idempotency-Key": uuid.uuid4().hex},
    )


async def test_pay_decline_cancel_webhook_and_reconcile_through_stripe(pg_settings, client_for, stripe_url):
    flush(stripe_url)
    settings = stripe_settings(pg_settings, stripe_url)
    headers = bearer(settings, "guest")
    async with receiver() as box, client_for(settings) as client:
        register_webhook(stripe_url, box.url + "/webhooks/stripe", SECRET)
        runtime = client.app.state.runtime
        assert payments_of(runtime).provider.name == "stripe"
        room = await seed_room_type(runtime, total=2)

        paid_id = await _hold(client, headers, room)
        paid = await _pay(client, headers, paid_id, "pm_card_visa")
        assert paid.status_code == 200, paid.text
        assert paid.json()["outcome"] == "confirmed" and paid.json()["payment"]["status"] == "captured"
        async with runtime.db.unit_of_work() as uow:
            payment = await payments.for_booking(uow, uuid.UUID(paid_id))
        assert payment.provider == "stripe" and payment.provider_reference.startswith("pi_")
        reference = payment.provider_reference

        declined_id = await _hold(client, headers, room)
        declined = await _pay(client, headers, declined_id, "pm_card_chargeCustomerFail")
        assert declined.status_code == 402, declined.text
        assert declined.json()["reason"] == "card_declined"
        assert (await night_counts(runtime, room["room_type_id"]))[START.isoformat()] == (2, 0, 1)  # the hold released

        report = await payments.reconcile(runtime, payments_of(runtime).provider)
        assert report["balanced"], report
        assert report["provider"] == "stripe" and report["captured"] == {"staybook": 20_000, "provider": 20_000}

        # Stripe's own delivery of the capture: applied once (it changes nothing: the live request
        # had captured), then a duplicate; a forgery of it is refused.
        while True:
            body, delivered = await box.next()
            if b"payment_intent.succeeded" in body and reference.encode() in body:
                break
        url = "/api/v1/payments/webhooks/stripe"
        forwarded = {"content-type": "application/json", "stripe-signature": delivered["stripe-signature"]}
        first = await client.post(url, content=body, headers=forwarded)
        assert first.status_code == 200 and first.json()["outcome"] == "applied", first.text
        again = await client.post(url, content=body, headers=forwarded)
        assert again.json()["outcome"] == "duplicate"
        forged = await client.post(url, content=body.replace(b"20000", b"1"), headers=forwarded)
        assert forged.status_code == 400 and forged.headers["content-type"] == "application/problem+json"
        elsewhere = await client.post("/api/v1/payments/webhooks/sandbox", content=body, headers=forwarded)
        assert elsewhere.status_code == 404

        cancelled = await client.post(f"/api/v1/bookings/{paid_id}/cancel", json={}, headers=headers)
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["refund"] == {"amount": 20_000, "currency": "EUR"}
        charge = await payments_of(runtime).provider.retrieve(reference)
        assert (charge.status, charge.refunded_amount) == ("refunded", 20_000)
        report = await payments.reconcile(runtime, payments_of(runtime).provider)
        assert report["balanced"], report
        assert report["refunded"] == {"staybook": 20_000, "provider": 20_000}
