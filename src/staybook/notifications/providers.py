"""SMS and push providers: a small contract, a sandbox, and an HTTP webhook adapter.

A provider sends one short message and returns its own message id, or raises
`TemporaryFailure` (worth retrying: timeouts, 5xx, throttling) or `PermanentFailure`
(never retried: rejected number, bad request). It also parses the delivery receipts
it posts back. A new provider is one class in this file.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx
import orjson

from staybook.kernel.contact import is_valid_e164


class DeliveryFailed(Exception):
    permanent = False


class TemporaryFailure(DeliveryFailed):
    """The channel may accept the message later."""


class PermanentFailure(DeliveryFailed):
    """The message can never be delivered as addressed: recorded, not retried."""

    permanent = True


@dataclass(frozen=True)
class DeliveryReceipt:
    provider_message_id: str
    status: Literal["delivered", "failed"]
    error: str | None = None


class MessageProvider(Protocol):
    name: str

    async def send(self, channel: str, recipient: str, text: str, reference: str) -> str:
        """Sends `text` to a phone number (sms) or user (push); returns the provider's message id."""

    def parse_receipt(self, payload: dict[str, Any]) -> DeliveryReceipt:
        """Turns the provider's delivery callback into a receipt; ValueError if it is malformed."""


def check_recipient(channel: str, recipient: str) -> None:
    if channel == "sms" and not is_valid_e164(recipient):
        raise PermanentFailure(f"not a valid E.164 phone number: {recipient!r}")


def _receipt(payload: dict[str, Any]) -> DeliveryReceipt:
    message_id, status = payload.get("message_id"), payload.get("status")
    if not isinstance(message_id, str) or status not in ("delivered", "failed"):
        raise ValueError("a receipt needs message_id and status 'delivered' or 'failed'")
    error = payload.get("error")
    return DeliveryReceipt(message_id, status, str(error) if error is not None else None)


@dataclass
class SandboxProvider:
    """Records messages instead of sending them (the demo, tests).

    Failures are simulated by number, so a test or a demo user can provoke them:
    numbers ending in 0000 fail temporarily, numbers ending in 9999 are rejected permanently.
    """

    name: str = "sandbox"
    sent: list[dict[str, str]] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    async def send(self, channel: str, recipient: str, text: str, reference: str) -> str:
        check_recipient(channel, recipient)
        if recipient.endswith("0000"):
            raise TemporaryFailure("sandbox: simulated carrier timeout")
        if recipient.endswith("9999"):
            raise PermanentFailure("sandbox: simulated unreachable number")
        message_id = f"sandbox-{next(self._ids)}"
        self.sent.append({"id": message_id, "channel": channel, "to": recipient, "text": text, "reference": reference})
        return message_id

    def parse_receipt(self, payload: dict[str, Any]) -> DeliveryReceipt:
        return _receipt(payload)


class WebhookProvider:
    """Posts each message as JSON to an HTTP gateway (an SMS aggregator or push relay).

    Request: `{"channel", "to", "text", "reference"}` with `Authorization: Bearer <token>` and
    `X-Staybook-Signature: sha256=<hmac of the body>`; a 2xx answer carries `{"message_id"}`.
    4xx (except 408/429) is a permanent rejection; 5xx, 408, 429 and network errors are temporary.
    """

    name = "webhook"

    def __init__(self, url: str, token: str | None, client: httpx.AsyncClient) -> None:
        self.url = url
        self.token = token
        self.client = client

    async def send(self, channel: str, recipient: str, text: str, reference: str) -> str:
        check_recipient(channel, recipient)
        body = orjson.dumps({"channel": channel, "to": recipient, "text": text, "reference": reference})
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
            signature = hmac.new(self.token.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Staybook-Signature"] = f"sha256={signature}"
        try:
            response = await self.client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as error:
            raise TemporaryFailure(f"webhook unreachable: {type(error).__name__}: {error}") from error
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise TemporaryFailure(f"webhook answered {response.status_code}")
        if response.status_code >= 400:
            raise PermanentFailure(f"webhook rejected the message: {response.status_code} {response.text[:200]}")
        try:
            return str(response.json()["message_id"])
        except (ValueError, KeyError, TypeError) as error:
            raise TemporaryFailure("webhook answered without a message_id") from error

    def parse_receipt(self, payload: dict[str, Any]) -> DeliveryReceipt:
        return _receipt(payload)
