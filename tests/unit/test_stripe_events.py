"""The stripe provider reads each webhook it follows, in the shape Stripe's API reference gives the
objects (the events localstripe does not send; tests/integration/test_payment_providers.py has the
ones it does, delivered for real)."""

from __future__ import annotations

import time

import orjson
import pytest

from staybook.kernel.settings import Settings
from staybook.payments.provider import ChargeStatus, IgnoredEvent, sign
from staybook.payments.stripe import SIGNATURE_HEADER, StripeProvider

SECRET = "whsec_unit"


@pytest.fixture
async def stripe():
    settings = Settings(
        environment="test",
        payments={"provider": "stripe", "stripe_api_key": "sk_test_unit", "webhook_secret": SECRET},
    )
    provider = StripeProvider(None, settings)
    yield provider
    await provider.close()


def intent(status: str, **fields) -> dict:
    return {
        "id": "pi_3Mtw",
        "object": "payment_intent",
        "amount": 20_000,
        "amount_capturable": 20_000 if status == "requires_capture" else 0,
        "amount_received": 20_000 if status == "succeeded" else 0,
        "capture_method": "manual",
        "currency": "eur",
        "latest_charge": "ch_3Mtw",
        "last_payment_error": None,
        "metadata": {"staybook_key": "5d0f0c5e-2b7e-4d40-9b62-0d5f0c9e4a11"},
        "status": status,
    } | fields


def delivered(provider: StripeProvider, event_type: str, obj: dict) -> dict:
    body = orjson.dumps({"id": "evt_1", "object": "event", "type": event_type, "data": {"object": obj}})
    event = provider.parse_webhook(body, {SIGNATURE_HEADER: sign(SECRET.encode(), int(time.time()), body)})
    return {"type": event.type, **event.charge.__dict__}


async def test_each_followed_event_in_the_neutral_vocabulary(stripe):
    key = "5d0f0c5e-2b7e-4d40-9b62-0d5f0c9e4a11"
    authorised = delivered(stripe, "payment_intent.amount_capturable_updated", intent("requires_capture"))
    assert (authorised["status"], authorised["idempotency_key"], authorised["currency"]) == (
        ChargeStatus.AUTHORISED,
        key,
        "EUR",
    )
    captured = delivered(stripe, "payment_intent.succeeded", intent("succeeded"))
    assert (captured["status"], captured["captured_amount"]) == (ChargeStatus.CAPTURED, 20_000)
    error = {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds"}
    failed = delivered(
        stripe, "payment_intent.payment_failed", intent("requires_payment_method", last_payment_error=error)
    )
    assert (failed["status"], failed["decline_code"]) == (ChargeStatus.DECLINED, "insufficient_funds")
    voided = delivered(stripe, "payment_intent.canceled", intent("canceled"))
    assert voided["status"] == ChargeStatus.VOIDED
    charge = {
        "id": "ch_3Mtw",
        "object": "charge",
        "amount": 20_000,
        "amount_captured": 20_000,
        "amount_refunded": 5_000,
        "currency": "eur",
        "metadata": {},
        "payment_intent": "pi_3Mtw",
        "refunded": False,
    }
    refunded = delivered(stripe, "charge.refunded", charge)
    assert (refunded["reference"], refunded["status"], refunded["refunded_amount"]) == (
        "pi_3Mtw",
        ChargeStatus.REFUNDED,
        5_000,
    )
    assert refunded["idempotency_key"] == ""  # matched to its payment by reference


async def test_events_about_other_things_are_ignored(stripe):
    body = orjson.dumps({"id": "evt_2", "type": "customer.created", "data": {"object": {"id": "cus_1"}}})
    with pytest.raises(IgnoredEvent):
        stripe.parse_webhook(body, {SIGNATURE_HEADER: sign(SECRET.encode(), int(time.time()), body)})


def test_the_stripe_provider_needs_a_key():
    with pytest.raises(ValueError, match="stripe_api_key"):
        StripeProvider(None, Settings(environment="test", payments={"provider": "stripe"}))
