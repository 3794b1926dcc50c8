"""The Stripe provider: PaymentIntents with manual capture over Stripe's REST API (httpx).

| contract | Stripe |
|---|---|
| authorise | `POST /v1/payment_intents` (`capture_method=manual`, `confirm=true`, the token as `payment_method`) |
| capture | `POST /v1/payment_intents/{id}/capture` (`amount_to_capture`) |
| void | `POST /v1/payment_intents/{id}/cancel` |
| refund | `POST /v1/refunds` (`payment_intent`, `amount`) |
| find | `GET /v1/payment_intents/search` on `metadata['staybook_key']` |
| retrieve, charges | `GET /v1/payment_intents/{id}`, `GET /v1/payment_intents` (paged, `latest_charge` expanded) |
| webhooks | `Stripe-Signature` (`t=...,v1=<HMAC-SHA256 of "t.body">`), `payment_intent.*`, `charge.refunded` |

Each call sends staybook's idempotency key as `Idempotency-Key` and keeps it in the object's
metadata (`staybook_key`), which is how `find` and webhooks name the payment. A capture or void
repeated after it took effect, and a refund repeated with its key, answer the charge as it is
instead of failing: the saga retries them after crashes, possibly past Stripe's 24-hour
idempotency window. The token is a PaymentMethod id (`pm_card_visa`,
`pm_card_chargeCustomerFail` in test mode). docs/payments.md says what it is tested against.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

import httpx
import orjson
import structlog

from staybook.kernel.db import Database
from staybook.kernel.settings import Settings
from staybook.payments.provider import (
    ChargeState,
    ChargeStatus,
    IgnoredEvent,
    ProviderError,
    ProviderEvent,
    ProviderTimeout,
    verify,
)

log = structlog.get_logger("staybook.payments.stripe")

SIGNATURE_HEADER = "stripe-signature"
KEY = "staybook_key"
# PaymentIntent statuses that are not yet an answer about the money (unless a payment error says why).
_UNSETTLED = {"requires_payment_method", "requires_confirmation", "processing"}
_EVENTS = {
    "payment_intent.amount_capturable_updated",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "charge.refunded",
}


class StripeProvider:
    name = "stripe"

    def __init__(self, db: Database | None, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None):
        payments = settings.payments
        if payments.stripe_api_key is None:
            raise ValueError("payments.stripe_api_key is required for the stripe provider")
        self.secret = payments.webhook_secret.get_secret_value().encode()
        self.tolerance = payments.webhook_tolerance_seconds
        self.clock = time.time  # what webhook timestamps are checked against
        self.client = httpx.AsyncClient(
            base_url=payments.stripe_api_base,
            auth=(payments.stripe_api_key.get_secret_value(), ""),
            timeout=payments.provider_timeout_seconds,
            transport=transport,
        )

    # ----------------------------------------------------------- the contract

    async def authorise(self, *, token: str, amount: int, currency: str, idempotency_key: str) -> ChargeState:
        form = {
            "amount": amount,
            "currency": currency.lower(),
            "payment_method": token,
            "payment_method_types[0]": "card",
            "capture_method": "manual",
            "confirm": "true",
            f"metadata[{KEY}]": idempotency_key,
        }
        response = await self._call("POST", "/v1/payment_intents", data=form, key=idempotency_key, ok=(402,))
        if response.status_code == 402:  # the card's answer: a decline, not a failure
            return await self._declined(response.json()["error"], idempotency_key, amount, currency)
        return _state(response.json())

    async def capture(self, reference: str, *, amount: int, idempotency_key: str) -> ChargeState:
        return await self._move(
            reference, "capture", {"amount_to_capture": amount}, idempotency_key, ChargeStatus.CAPTURED
        )

    async def void(self, reference: str, *, idempotency_key: str) -> ChargeState:
        return await self._move(reference, "cancel", {}, idempotency_key, ChargeStatus.VOIDED)

    async def refund(self, reference: str, *, amount: int, idempotency_key: str) -> ChargeState:
        # The refund made under this key already, if any: a retry refunds once.
        refunds = await self._get("/v1/refunds", {"payment_intent": reference, "limit": 100})
        if not any(r.get("metadata", {}).get(KEY) == idempotency_key for r in refunds["data"]):
            form = {"payment_intent": reference, "amount": amount, f"metadata[{KEY}]": idempotency_key}
            await self._call("POST", "/v1/refunds", data=form, key=idempotency_key)
        return _state(await self._intent(reference))

    async def find(self, idempotency_key: str) -> ChargeState | None:
        query = {"query": f"metadata['{KEY}']:'{idempotency_key}'"}
        response = await self._call("GET", "/v1/payment_intents/search", params=query, ok=(404,))
        if response.status_code == 404:
            # A Stripe-compatible server without the search API: look through the list instead.
            async for charge in self.charges():
                if charge.idempotency_key == idempotency_key:
                    return charge
            return None
        found = response.json()["data"]
        return await self.retrieve(found[0]["id"]) if found else None

    async def retrieve(self, reference: str) -> ChargeState | None:
        response = await self._call(
            "GET", f"/v1/payment_intents/{reference}", params={"expand[]": "latest_charge"}, ok=(404,)
        )
        return _state(response.json()) if response.status_code != 404 else None

    async def charges(self, since: datetime | None = None) -> AsyncIterator[ChargeState]:
        params: dict[str, Any] = {"limit": 100, "expand[]": "data.latest_charge"}
        if since is not None:
            params["created[gte]"] = int(since.timestamp())
        while True:
            page = await self._get("/v1/payment_intents", params)
            for intent in page["data"]:
                if intent["status"] not in _UNSETTLED or intent.get("last_payment_error"):
                    yield _state(intent)
            if not page.get("has_more") or not page["data"]:
                return
            params["starting_after"] = page["data"][-1]["id"]

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        verify(self.secret, headers.get(SIGNATURE_HEADER), body, tolerance_seconds=self.tolerance, now=self.clock())
        event = orjson.loads(body)
        event_id, event_type = str(event["id"]), str(event["type"])
        if event_type not in _EVENTS:
            raise IgnoredEvent(event_id, event_type)
        obj = event["data"]["object"]
        if event_type == "charge.refunded":  # the object is the charge; the reference is its intent
            charge = ChargeState(
                reference=str(obj["payment_intent"]),
                idempotency_key=str(obj.get("metadata", {}).get(KEY, "")),
                status=ChargeStatus.REFUNDED,
                amount=int(obj["amount"]),
                currency=str(obj["currency"]).upper(),
                captured_amount=int(obj.get("amount_captured", obj["amount"])),
                refunded_amount=int(obj["amount_refunded"]),
            )
        else:
            charge = _state(obj)
        return ProviderEvent(id=event_id, type=event_type, charge=charge)

    async def close(self) -> None:
        await self.client.aclose()

    # ----------------------------------------------------------- Stripe's protocol

    async def _intent(self, reference: str) -> dict:
        return await self._get(f"/v1/payment_intents/{reference}", {"expand[]": "latest_charge"})

    async def _get(self, path: str, params: Mapping[str, Any]) -> dict:
        return (await self._call("GET", path, params=params)).json()

    async def _move(
        self, reference: str, action: str, form: dict, idempotency_key: str, wanted: ChargeStatus
    ) -> ChargeState:
        response = await self._call(
            "POST", f"/v1/payment_intents/{reference}/{action}", data=form, key=idempotency_key, ok=(400,)
        )
        if response.status_code != 400:
            return _state(response.json())
        # Refused as not in a state for it: done already (a retry) is its answer, anything else is an error.
        current = _state(await self._intent(reference))
        if current.status == wanted or (wanted == ChargeStatus.CAPTURED and current.status == ChargeStatus.REFUNDED):
            return current
        raise ProviderError(f"stripe: cannot {action} {reference} ({current.status}): {_message(response)}")

    async def _declined(self, error: dict, idempotency_key: str, amount: int, currency: str) -> ChargeState:
        intent = error.get("payment_intent")
        if intent is None and error.get("charge"):  # servers that name only the charge
            charge = await self._get(f"/v1/charges/{error['charge']}", {})
            intent = {"id": charge["payment_intent"]}
        return ChargeState(
            reference=str(intent["id"]) if intent else "",
            idempotency_key=idempotency_key,
            status=ChargeStatus.DECLINED,
            amount=amount,
            currency=currency,
            decline_code=error.get("decline_code") or error.get("code") or "card_declined",
        )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        data: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        key: str | None = None,
        ok: tuple[int, ...] = (),
    ) -> httpx.Response:
        headers = {"Idempotency-Key": key} if key is not None else None
        try:
            response = await self.client.request(method, path, data=data, params=params, headers=headers)
        except httpx.TimeoutException as error:
            raise ProviderTimeout(f"stripe: no answer within {self.client.timeout.read} s") from error
        except httpx.HTTPError as error:
            raise ProviderError(f"stripe: {type(error).__name__}: {error}") from error
        if response.status_code < 300 or response.status_code in ok:
            return response
        log.warning("stripe refused", context={"path": path, "status": response.status_code})
        raise ProviderError(f"stripe: HTTP {response.status_code} on {method} {path}: {_message(response)}")


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"].get("message", ""))
    except (ValueError, KeyError, AttributeError):
        return response.text[:200]


def _state(intent: dict) -> ChargeState:
    """A PaymentIntent (its `latest_charge` expanded or not) in the contract's vocabulary."""
    status = intent["status"]
    charge = intent.get("latest_charge")
    charge = charge if isinstance(charge, dict) else {}
    refunded = int(charge.get("amount_refunded", 0))
    amount = int(intent["amount"])
    if status == "requires_capture":
        mapped = ChargeStatus.AUTHORISED
    elif status == "succeeded":
        mapped = ChargeStatus.REFUNDED if refunded else ChargeStatus.CAPTURED
    elif status == "canceled":
        mapped = ChargeStatus.VOIDED
    elif status in _UNSETTLED and intent.get("last_payment_error"):
        mapped = ChargeStatus.DECLINED
    elif status == "requires_action":
        # The card wants the guest to authenticate (3-D Secure), which this flow cannot offer:
        # nothing is reserved, and it is answered as Stripe's own decline code for it.
        mapped = ChargeStatus.DECLINED
    else:
        raise ProviderError(f"stripe: payment intent {intent['id']} is {status}, not an answer yet")
    captured = int(intent.get("amount_received") or charge.get("amount_captured") or 0)
    if mapped in (ChargeStatus.CAPTURED, ChargeStatus.REFUNDED) and not captured:
        captured = amount  # servers that report the capture on the charge only as `captured: true`
    error = intent.get("last_payment_error") or {}
    return ChargeState(
        reference=str(intent["id"]),
        idempotency_key=str((intent.get("metadata") or {}).get(KEY, "")),
        status=mapped,
        amount=amount,
        currency=str(intent["currency"]).upper(),
        captured_amount=captured if mapped in (ChargeStatus.CAPTURED, ChargeStatus.REFUNDED) else 0,
        refunded_amount=refunded,
        decline_code=(error.get("decline_code") or error.get("code") or "authentication_required")
        if mapped == ChargeStatus.DECLINED
        else None,
    )
