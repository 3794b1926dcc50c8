"""The payment provider contract: what staybook needs from a card processor.

A provider (the sandbox, Stripe, ...) is one module implementing `PaymentProvider`
and answering in its neutral vocabulary (`ChargeState`, `ChargeStatus`,
`ProviderEvent`); nothing outside that module knows the provider's protocol or
tables. docs/payments.md says how to add one.
Card numbers never reach staybook: the guest's browser hands the card to the
provider and staybook only ever sees the provider's single-use token (PCI scope
stays with the provider).

Every call carries an idempotency key (staybook's payment id, with a suffix per
operation), so a call retried after a timeout or a crash finds the first result
instead of charging twice; `find` asks the provider what it knows about a
payment after a crash left staybook unsure, and `charges` lists the provider's
books for reconciliation.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog

from staybook.kernel.states import State

log = structlog.get_logger("staybook.payments.provider")


class ChargeStatus(State):
    """A charge as every provider's ledger is read: the provider maps its own states onto these."""

    AUTHORISED = "authorised"
    CAPTURED = "captured"
    VOIDED = "voided"
    REFUNDED = "refunded"  # all or part of the captured amount given back
    DECLINED = "declined"


@dataclass(frozen=True)
class ChargeState:
    """What the provider's ledger says about one charge."""

    reference: str
    # The key of the call that created the charge (staybook's payment id), as the provider keeps it.
    idempotency_key: str
    status: ChargeStatus
    amount: int
    currency: str
    captured_amount: int = 0
    refunded_amount: int = 0
    decline_code: str | None = None


@dataclass(frozen=True)
class ProviderEvent:
    """A verified webhook: the provider's event id (for de-duplication), its own type (for the
    record) and the charge as the event shows it, in the neutral vocabulary."""

    id: str
    type: str
    charge: ChargeState


class ProviderError(Exception):
    """The provider refused to work (5xx, bad credentials): nothing happened."""


class ProviderTimeout(ProviderError):
    """No answer in time: the call may or may not have taken effect; `find` or a webhook will tell."""


class CircuitOpen(ProviderError):
    """The breaker is open: the provider was not called, so nothing happened there."""


class ProviderBreaker:
    """Fails new payments fast while the provider keeps failing.

    After `threshold` failures in a row (errors or timeouts), `check` refuses for `open_seconds`
    without the provider being called: a guest hears at once that nothing was charged and the
    booking is still held, instead of each waiting out the provider's timeout. Then calls go
    through again; while the failures have not been broken by a success, the next failure opens
    it again at once (half-open). One breaker per process: each learns of an outage by itself.
    """

    def __init__(self, threshold: int = 5, open_seconds: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.threshold = threshold
        self.open_seconds = open_seconds
        self.clock = clock
        self.failures = 0
        self._open_until = 0.0

    @property
    def open(self) -> bool:
        return self.clock() < self._open_until

    def check(self) -> None:
        if self.open:
            raise CircuitOpen(f"the payment provider failed {self.failures} times in a row; not called")

    def succeeded(self) -> None:
        self.failures = 0

    def failed(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold and not self.open:
            log.warning("payment provider circuit open", failures=self.failures, seconds=self.open_seconds)
            self._open_until = self.clock() + self.open_seconds


class InvalidSignature(Exception):
    """A webhook whose signature or timestamp does not verify."""


class IgnoredEvent(Exception):
    """A verified webhook about something staybook does not follow (a customer, a payout, ...)."""

    def __init__(self, event_id: str, event_type: str) -> None:
        super().__init__(f"{event_type} ({event_id})")
        self.event_id, self.event_type = event_id, event_type


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`: the signature header Stripe defined
    and the sandbox copies."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: bytes, header: str | None, body: bytes, *, tolerance_seconds: int, now: float) -> None:
    """Raises InvalidSignature unless one `v1` of the header signs `body` with `secret` and its
    timestamp is within the tolerance window (a delivery replayed later is refused)."""
    if not header:
        raise InvalidSignature("missing signature header")
    pairs = [part.strip().split("=", 1) for part in header.split(",") if "=" in part]
    given = [value for key, value in pairs if key == "v1"]
    try:
        timestamp = int(next(value for key, value in pairs if key == "t"))
    except (StopIteration, ValueError) as error:
        raise InvalidSignature("malformed signature header") from error
    if not given:
        raise InvalidSignature("malformed signature header")
    if abs(now - timestamp) > tolerance_seconds:
        raise InvalidSignature("timestamp outside the tolerance window")
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    # Several v1 entries while a secret is being rolled: any one that matches will do.
    if not any(hmac.compare_digest(expected, candidate) for candidate in given):
        raise InvalidSignature("signature mismatch")


class PaymentProvider(Protocol):
    """What a provider module implements. Statuses a call answers with are `ChargeStatus` values."""

    name: str

    async def authorise(self, *, token: str, amount: int, currency: str, idempotency_key: str) -> ChargeState:
        """Reserves the amount on the card behind `token`; status `authorised` or `declined`."""

    async def capture(self, reference: str, *, amount: int, idempotency_key: str) -> ChargeState:
        """Takes the authorised money; status `captured`. Repeated, answers the captured charge."""

    async def void(self, reference: str, *, idempotency_key: str) -> ChargeState:
        """Cancels an authorisation that was not captured; status `voided`. Repeated, the same."""

    async def refund(self, reference: str, *, amount: int, idempotency_key: str) -> ChargeState:
        """Gives captured money back (all or part); repeated with the same key, refunds once."""

    async def find(self, idempotency_key: str) -> ChargeState | None:
        """The charge created with this idempotency key, or None if the provider never saw it."""

    async def retrieve(self, reference: str) -> ChargeState | None:
        """The charge as the provider's ledger has it now, or None if it has no such charge."""

    def charges(self, since: datetime | None = None) -> AsyncIterator[ChargeState]:
        """Every charge the provider holds for this merchant (created at or after `since`), for
        reconciliation; paged by the provider module as its API pages."""

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        """Verifies signature and timestamp; raises InvalidSignature, or ValueError when malformed.
        An event about something other than a charge raises IgnoredEvent."""

    async def close(self) -> None:
        """Releases connections and background work at shutdown."""
