"""The payment provider contract, passed by every provider module: the sandbox over its own ledger,
and the stripe provider speaking Stripe's REST protocol to localstripe (a stateful fake Stripe).

Webhooks are real deliveries: each provider posts a signed event over HTTP to a small receiver
here, and that request is what `parse_webhook` is given (as it is, altered, and replayed late).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from staybook.payments import service as payments
from staybook.payments.models import PaymentStatus
from staybook.payments.provider import ChargeStatus, InvalidSignature, PaymentProvider, ProviderBreaker
from staybook.payments.sandbox import SandboxProvider
from staybook.payments.service import PaymentsDeps
from staybook.payments.stripe import StripeProvider
from tests.stripe_server import API_KEY, flush, register_webhook
from tests.webhook_receiver import Receiver, receiver

SECRET = "whsec_contract_tests"


@dataclass
class Case:
    """One provider under the contract, with the test tokens it understands."""

    provider: PaymentProvider
    approve: str
    decline: str
    runtime: object
    receiver: Receiver

    async def delivery(self, reference: str, status: ChargeStatus) -> tuple[bytes, dict[str, str]]:
        """The webhook the provider posts about charge `reference` reaching `status`."""
        if isinstance(self.provider, SandboxProvider):
            await self.provider.deliver_pending()  # what the worker's job does
        while True:
            body, headers = await self.receiver.next()
            with contextlib.suppress(Exception):  # other events (and other tests' late ones) pass by
                charge = self.provider.parse_webhook(body, headers).charge
                if (charge.reference, charge.status) == (reference, status):
                    return body, headers


def _settings(pg_settings, name: str, stripe_base: str | None):
    update = {
        "provider": name,
        "webhook_secret": SECRET,
        "sandbox_instant": False,
        "sandbox_latency_ms": 0,
        "provider_timeout_seconds": 10,
    }
    if stripe_base is not None:
        update |= {"stripe_api_key": API_KEY, "stripe_api_base": stripe_base}
    payments_settings = pg_settings.payments.model_validate(pg_settings.payments.model_dump() | update)
    return pg_settings.model_copy(update={"payments": payments_settings})


@pytest.fixture(params=["sandbox", "stripe"])
async def case(request, pg_settings, make_runtime) -> AsyncIterator[Case]:
    if request.param == "stripe":
        base = request.getfixturevalue("stripe_url")
        flush(base)
    else:
        base = None
    settings = _settings(pg_settings, request.param, base)
    runtime = await make_runtime(settings)
    async with receiver() as box:
        if request.param == "stripe":
            provider: PaymentProvider = StripeProvider(runtime.db, settings)
            register_webhook(base, box.url + "/webhooks/stripe", SECRET)
            tokens = ("pm_card_visa", "pm_card_chargeCustomerFail")
        else:
            provider = SandboxProvider(runtime.db, settings)
            provider.client = httpx.AsyncClient(base_url=box.url)
            tokens = ("tok_visa", "tok_decline")
        try:
            yield Case(provider, *tokens, runtime=runtime, receiver=box)
        finally:
            await provider.close()
            if isinstance(provider, SandboxProvider):
                await provider.client.aclose()


def _key() -> str:
    return str(uuid.uuid4())


async def test_authorise_then_capture(case: Case):
    key = _key()
    authorised = await case.provider.authorise(token=case.approve, amount=12_500, currency="EUR", idempotency_key=key)
    assert authorised.status == ChargeStatus.AUTHORISED
    assert (authorised.amount, authorised.currency, authorised.idempotency_key) == (12_500, "EUR", key)
    assert authorised.captured_amount == 0
    captured = await case.provider.capture(authorised.reference, amount=12_500, idempotency_key=f"{key}:capture")
    assert captured.status == ChargeStatus.CAPTURED and captured.captured_amount == 12_500
    again = await case.provider.capture(authorised.reference, amount=12_500, idempotency_key=f"{key}:capture")
    assert again.status == ChargeStatus.CAPTURED and again.reference == authorised.reference
    assert await case.provider.retrieve(authorised.reference) == captured
    found = await case.provider.find(key)
    assert found is not None and found.reference == authorised.reference and found.status == ChargeStatus.CAPTURED
    assert await case.provider.find(_key()) is None


async def test_decline(case: Case):
    key = _key()
    declined = await case.provider.authorise(token=case.decline, amount=9_000, currency="EUR", idempotency_key=key)
    assert declined.status == ChargeStatus.DECLINED and declined.decline_code
    assert declined.captured_amount == 0
    found = await case.provider.find(key)
    assert found is not None and found.status == ChargeStatus.DECLINED and found.reference == declined.reference


async def test_void(case: Case):
    key = _key()
    authorised = await case.provider.authorise(token=case.approve, amount=7_000, currency="EUR", idempotency_key=key)
    voided = await case.provider.void(authorised.reference, idempotency_key=f"{key}:void")
    assert voided.status == ChargeStatus.VOIDED and voided.captured_amount == 0
    again = await case.provider.void(authorised.reference, idempotency_key=f"{key}:void")
    assert again.status == ChargeStatus.VOIDED
    assert (await case.provider.retrieve(authorised.reference)).status == ChargeStatus.VOIDED


async def test_refund_once_per_key(case: Case):
    key = _key()
    authorised = await case.provider.authorise(token=case.approve, amount=20_000, currency="EUR", idempotency_key=key)
    await case.provider.capture(authorised.reference, amount=20_000, idempotency_key=f"{key}:capture")
    refunded = await case.provider.refund(authorised.reference, amount=5_000, idempotency_key=f"{key}:refund")
    assert refunded.status == ChargeStatus.REFUNDED
    assert (refunded.captured_amount, refunded.refunded_amount) == (20_000, 5_000)
    again = await case.provider.refund(authorised.reference, amount=5_000, idempotency_key=f"{key}:refund")
    assert again.refunded_amount == 5_000
    assert (await case.provider.retrieve(authorised.reference)).refunded_amount == 5_000


async def test_webhook_signature_good_bad_and_replayed(case: Case):
    key = _key()
    authorised = await case.provider.authorise(token=case.approve, amount=3_000, currency="EUR", idempotency_key=key)
    await case.provider.capture(authorised.reference, amount=3_000, idempotency_key=f"{key}:capture")
    body, headers = await case.delivery(authorised.reference, ChargeStatus.CAPTURED)

    event = case.provider.parse_webhook(body, headers)
    assert event.id and event.type
    assert event.charge.reference == authorised.reference and event.charge.idempotency_key == key
    assert event.charge.status == ChargeStatus.CAPTURED

    with pytest.raises(InvalidSignature):  # the body altered after signing
        case.provider.parse_webhook(body.replace(b"3000", b"3001"), headers)
    signature = next(name for name in headers if name.endswith("signature"))
    with pytest.raises(InvalidSignature):  # no signature
        case.provider.parse_webhook(body, {k: v for k, v in headers.items() if k != signature})
    with pytest.raises(InvalidSignature):  # signed with another secret
        forged = headers | {signature: headers[signature].split("v1=")[0] + "v1=" + "0" * 64}
        case.provider.parse_webhook(body, forged)

    # The same delivery replayed after the tolerance window is refused ...
    real_clock = case.provider.clock
    case.provider.clock = lambda: real_clock() + case.runtime.settings.payments.webhook_tolerance_seconds + 5
    with pytest.raises(InvalidSignature):
        case.provider.parse_webhook(body, headers)
    case.provider.clock = real_clock
    # ... and within it, the service takes it once: the event id de-duplicates.
    name = case.provider.name
    deps = PaymentsDeps(case.provider, ProviderBreaker(3, 30))  # the process's provider is this one
    first = await payments.handle_webhook(case.runtime, deps, name, body, headers)
    second = await payments.handle_webhook(case.runtime, deps, name, body, headers)
    assert first == "ignored" and second == "duplicate"  # no staybook payment carries this key


async def test_reconciliation_finds_an_authorised_but_unconfirmed_payment(case: Case):
    runtime = case.runtime
    async with runtime.db.unit_of_work() as uow:
        confirmed = await payments.open_payment(
            uow,
            booking_id=uuid.uuid4(),
            payer_id=uuid.uuid4(),
            amount=4_000,
            currency="EUR",
            provider_name=case.provider.name,
        )
        unconfirmed = await payments.open_payment(
            uow,
            booking_id=uuid.uuid4(),
            payer_id=uuid.uuid4(),
            amount=6_000,
            currency="EUR",
            provider_name=case.provider.name,
        )
    charge = await case.provider.authorise(
        token=case.approve, amount=4_000, currency="EUR", idempotency_key=str(confirmed.id)
    )
    captured = await case.provider.capture(charge.reference, amount=4_000, idempotency_key=f"{confirmed.id}:capture")
    async with runtime.db.unit_of_work() as uow:
        await payments.record(uow, confirmed.id, PaymentStatus.AUTHORISED, charge=charge)
        await payments.record(uow, confirmed.id, PaymentStatus.CAPTURED, charge=captured)
    balanced = await payments.reconcile(runtime, case.provider)
    assert balanced["balanced"], balanced
    assert balanced["captured"] == {"staybook": 4_000, "provider": 4_000}

    # The provider authorised the second one, and its answer never reached staybook (a crash).
    lost = await case.provider.authorise(
        token=case.approve, amount=6_000, currency="EUR", idempotency_key=str(unconfirmed.id)
    )
    report = await payments.reconcile(runtime, case.provider)
    assert not report["balanced"]
    assert report["mismatches"] == [
        {
            "reference": lost.reference,
            "payment_id": str(unconfirmed.id),
            "problem": "status differs",
            "staybook_status": "pending",
            "provider_status": "authorised",
            "staybook_refunded": 0,
            "provider_refunded": 0,
        }
    ]
    assert report["pending_without_reference"] == 0


async def test_a_stripe_card_that_wants_authentication_is_declined(stripe_url, pg_settings, make_runtime):
    """3-D Secure cannot be offered in this flow: the intent waits for the guest, nothing is reserved."""
    settings = _settings(pg_settings, "stripe", stripe_url)
    provider = StripeProvider((await make_runtime(settings)).db, settings)
    try:
        card = {"number": "4000002500003155", "exp_month": "12", "exp_year": "2034", "cvc": "123"}
        method = await provider.client.post(
            "/v1/payment_methods", data={"type": "card"} | {f"card[{k}]": v for k, v in card.items()}
        )
        assert method.status_code == 200, method.text
        key = _key()
        answer = await provider.authorise(token=method.json()["id"], amount=5_000, currency="EUR", idempotency_key=key)
        assert (answer.status, answer.decline_code) == (ChargeStatus.DECLINED, "authentication_required")
        assert await provider.find(key) == answer
    finally:
        await provider.close()
