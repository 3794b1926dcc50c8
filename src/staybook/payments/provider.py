"""The payment provider contract: what staybook needs from a card processor.

A real provider (Stripe, Adyen, ...) is one module implementing `PaymentProvider`.
Card numbers never reach staybook: the guest's browser hands the card to the
provider and staybook only ever sees the provider's single-use token (PCI scope
stays with the provider).

Every call carries an idempotency key (staybook's payment id, with a suffix per
operation), so a call retried after a timeout or a crash finds the first result
instead of charging twice; `find` asks the provider what it knows about a
payment after a crash left staybook unsure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import structlog

log = structlog.get_logger("staybook.payments.provider")


@dataclass(frozen=True)
class ChargeState:
    """What the provider's ledger says about one charge."""

    reference: str
    idempotency_key: str
    status: str  # authorised | captured | voided | refunded | declined
    amount: int
    currency: str
    captured_amount: int = 0
    refunded_amount: int = 0
    decline_code: str | None = None


@dataclass(frozen=True)
class ProviderEvent:
    """A verified webhook: the provider's event id (for de-duplication), its type and the charge."""

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


class PaymentProvider(Protocol):
    name: str

    async def authorise(self, *, token: str, amount: int, currency: str, idempotency_key: str) -> ChargeState:
        """Reserves the amount on the card behind `token`; status `authorised` or `declined`."""

    async def capture(self, reference: str, *, amount: int, idempotency_key: str) -> ChargeState:
        """Takes the authorised money; status `captured`."""

    async def void(self, reference: str, *, idempotency_key: str) -> ChargeState:
        """Cancels an authorisation that was not captured; status `voided`."""

    async def refund(self, reference: str, *, amount: int, idempotency_key: str) -> ChargeState:
        """Gives captured money back (all or part); repeated with the same key, refunds once."""

    async def find(self, idempotency_key: str) -> ChargeState | None:
        """The charge created with this idempotency key, or None if the provider never saw it."""

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        """Verifies signature and timestamp; raises InvalidSignature, or ValueError when malformed."""
