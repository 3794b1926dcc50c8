"""The booking's decisions, without I/O: its lifecycle, its payment saga, and what each saga run
does next (docs/booking-saga.md).

Two state machines, each an enum with one transition table: `BookingStatus` (what the guest and
the host see, `LIFECYCLE`) and `SagaStep` (where the payment saga stands, `SAGA`). A few of their
spellings are the same (`held`, `confirmed`, `expired`, `cancelled`); the enums keep them apart.
The saga's decisions are pure functions of what a run knows (its driver, the recorded payment,
the booking, the provider's answer); `saga.py` does the I/O they ask for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from staybook.booking import policy
from staybook.kernel.errors import Conflict, StaybookError, UpstreamError
from staybook.kernel.states import State, Transitions


class BookingStatus(State):
    HELD = "held"
    CONFIRMED = "confirmed"
    EXPIRED = "expired"
    PAYMENT_FAILED = "payment_failed"
    CANCELLED = "cancelled"


# The booking lifecycle (DESIGN.md "The booking core").
LIFECYCLE = Transitions(
    BookingStatus,
    {
        BookingStatus.HELD: {BookingStatus.CONFIRMED, BookingStatus.EXPIRED, BookingStatus.PAYMENT_FAILED},
        BookingStatus.CONFIRMED: {BookingStatus.CANCELLED},
        BookingStatus.EXPIRED: (),
        BookingStatus.PAYMENT_FAILED: (),
        BookingStatus.CANCELLED: (),
    },
)


class SagaStep(State):
    HELD = "held"
    AUTHORISING = "authorising"
    CAPTURING = "capturing"
    VOIDING = "voiding"
    REFUNDING = "refunding"
    CANCEL_REFUNDING = "cancel_refunding"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    COMPENSATED = "compensated"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


# Every step change is a guarded UPDATE from one of these rows (repository.set_step).
SAGA = Transitions(
    SagaStep,
    {
        SagaStep.HELD: {SagaStep.AUTHORISING, SagaStep.EXPIRED},
        # Back to held: the provider failed before reserving anything, the guest may pay again.
        SagaStep.AUTHORISING: {
            SagaStep.HELD,
            SagaStep.CAPTURING,
            SagaStep.CONFIRMED,
            SagaStep.REFUNDING,
            SagaStep.FAILED,
        },
        SagaStep.CAPTURING: {SagaStep.CONFIRMED, SagaStep.REFUNDING, SagaStep.VOIDING},
        SagaStep.VOIDING: {SagaStep.COMPENSATED},
        SagaStep.REFUNDING: {SagaStep.COMPENSATED},
        SagaStep.CANCEL_REFUNDING: {SagaStep.CANCELLED},
        SagaStep.CONFIRMED: {SagaStep.CANCEL_REFUNDING, SagaStep.CANCELLED},
        SagaStep.FAILED: (),
        SagaStep.COMPENSATED: (),
        SagaStep.EXPIRED: (),
        SagaStep.CANCELLED: (),
    },
)
# Steps that wait for a person, not for the provider: a hold to be paid, a stay to be cancelled.
RESTING = (SagaStep.HELD, SagaStep.CONFIRMED)
# Steps where a provider call may be in flight: the recovery pass finishes or undoes them.
IN_FLIGHT = tuple(step for step in SagaStep if step not in SAGA.terminal and step not in RESTING)


class HoldExpired(Conflict):
    code, title = "hold-expired", "The hold on this booking has expired"


class PaymentInProgress(Conflict):
    """409 while an earlier payment attempt's saga runs; the key's answer is its outcome, not this."""

    transient = True


class PaymentDeclined(StaybookError):
    status, code, title = 402, "payment-declined", "Payment declined"


class ProviderUnavailable(UpstreamError):
    """The provider failed before reserving anything: the booking stays held and the guest may pay again."""

    code, title = "payment-provider-error", "The payment provider failed; nothing was charged"


@dataclass(frozen=True, slots=True)
class Cancellation:
    """What cancelling a confirmed booking decides: who did it, the refund, where status and saga go."""

    by: str  # guest | host | admin
    refund: int
    status: BookingStatus
    saga_step: SagaStep


@dataclass(frozen=True, slots=True)
class Booking:
    """A booking as its rules read it (from an ORM row or a driver record, `Booking.of`)."""

    status: BookingStatus
    expires_at: datetime
    check_in: date
    created_at: datetime
    units: int
    nightly_prices: Sequence[dict]
    cancellation_policy: str
    property: dict

    @classmethod
    def of(cls, row) -> Booking:
        return cls(
            BookingStatus(row.status),
            row.expires_at,
            row.check_in,
            row.created_at,
            row.units,
            row.nightly_prices,
            row.cancellation_policy,
            row.property,
        )

    def require_payable(self, saga_step: str, now: datetime) -> None:
        """A payment may start: the booking is held, no payment runs, the hold has not expired."""
        if self.status is not BookingStatus.HELD:
            raise Conflict(
                f"This booking is {self.status}; only a held booking can be paid", booking_status=self.status
            )
        if saga_step != SagaStep.HELD:
            raise PaymentInProgress("A payment for this booking is already in progress", step=saga_step)
        if self.expires_at <= now:
            raise HoldExpired("The hold expired before payment; please book again")

    def expire(self) -> BookingStatus:
        """The hold's deadline passed with no payment in flight."""
        return LIFECYCLE.require(self.status, BookingStatus.EXPIRED)

    def fail_payment(self) -> BookingStatus | None:
        """The payment failed (declined, interrupted, voided): a held booking fails and frees its nights;
        None for a booking no longer held (only the payment's record changes)."""
        if LIFECYCLE.can(self.status, BookingStatus.PAYMENT_FAILED):
            return BookingStatus.PAYMENT_FAILED
        return None

    def cancel(self, *, by: str, at: datetime) -> Cancellation:
        """Cancelled by its guest, host or an admin: refund by policy (hosts and admins in full)."""
        if not LIFECYCLE.can(self.status, BookingStatus.CANCELLED):
            raise Conflict(
                f"This booking is {self.status}; only a confirmed booking can be cancelled",
                booking_status=self.status,
            )
        refund = policy.refund_amount(
            self.cancellation_policy,
            [night["amount"] * self.units for night in self.nightly_prices],
            booked_at=self.created_at,
            starts_at=policy.check_in_moment(self.check_in, self.property["check_in_time"], self.property["timezone"]),
            cancelled_at=at,
            by_host=by != "guest",
        )
        step = SagaStep.CANCEL_REFUNDING if refund else SagaStep.CANCELLED
        return Cancellation(by, refund, BookingStatus.CANCELLED, SAGA.require(SagaStep.CONFIRMED, step))


def cancelled_by(*, is_admin: bool, user_id: object, host_id: object) -> str:
    if is_admin:
        return "admin"
    return "host" if user_id == host_id else "guest"


# ------------------------------------------------------------------ the saga's decisions


class Driver(StrEnum):
    """Who runs the saga: the live payment request (it has the card token and the idempotency
    claim), a provider webhook (it only moves a saga the provider answered late), or the
    recovery pass (after a crash: it asks the provider what happened)."""

    LIVE = "live"
    WEBHOOK = "webhook"
    RECOVERY = "recovery"


class Next(StrEnum):
    """What a saga run does at its step."""

    AUTHORISE = "authorise"  # ask the provider to authorise the amount (the live request only)
    ASK_PROVIDER = "ask-provider"  # recovery: what does the provider know of this payment?
    WAIT = "wait"  # nothing for this run: another run settles it (or nothing is left to do)
    FAIL_INTERRUPTED = "fail-interrupted"  # the provider never saw the payment: it fails, the hold ends
    FAIL_DECLINED = "fail-declined"  # declined: payment failed, hold released, booking payment_failed
    CAPTURE = "capture"  # take the authorised money, then settle the capture
    RECORD_AUTHORISATION = "record-authorisation"  # saga -> capturing; the next run captures or voids
    SETTLE_CAPTURE = "settle-capture"  # captured: confirm if the nights are still held, else refund
    VOID = "void"  # saga -> voiding: an authorisation the booking can no longer use
    VOID_AT_PROVIDER = "void-at-provider"  # cancel the authorisation; payment voided, booking fails
    REFUND = "refund"  # give back what `refund_owed` says; saga -> `after_refund`


# Provider answers that end a payment before any money is reserved.
_REFUSED = ("declined", "failed")
# A capture the provider made (and perhaps refunded since): the money moved.
_CAPTURED = ("captured", "refunded")


def authorising(driver: Driver, payment: str, charge: str | None = None, *, asked: bool = False) -> Next:
    """Step `authorising`. `payment`: staybook's record of the payment; `charge`: the provider's
    status for it once asked (`asked`; None then means the provider never saw the payment)."""
    if payment == "pending" and charge is None:
        if asked:
            return Next.FAIL_INTERRUPTED
        if driver is Driver.LIVE:
            return Next.AUTHORISE
        if driver is Driver.RECOVERY:
            return Next.ASK_PROVIDER
        return Next.WAIT  # a webhook about something else; the live request or recovery settles it
    if (charge or payment) in _REFUSED:
        return Next.FAIL_DECLINED
    # Live: straight on to capture, no transaction in between (recovery asks the provider after a crash).
    return Next.CAPTURE if driver is Driver.LIVE else Next.RECORD_AUTHORISATION


def capturing(
    driver: Driver,
    payment: str,
    booking: str,
    charge: str | None = None,
    *,
    asked: bool = False,
    applied_authorisation: bool = False,
) -> Next:
    """Step `capturing` (the authorisation is recorded). `applied_authorisation`: this webhook run
    recorded it itself; otherwise the live request that recorded it is capturing right now."""
    if payment == "captured":
        return Next.SETTLE_CAPTURE
    if driver is Driver.RECOVERY:
        if not asked:
            return Next.ASK_PROVIDER  # a crash after authorising: did the capture happen?
        return Next.SETTLE_CAPTURE if charge in _CAPTURED else Next.VOID
    if driver is Driver.WEBHOOK and not applied_authorisation:
        return Next.WAIT
    if booking != BookingStatus.HELD:
        return Next.VOID
    return Next.CAPTURE


def decide(
    step: str | None,
    driver: Driver,
    *,
    payment: str | None = None,
    booking: str | None = None,
    charge: str | None = None,
    asked: bool = False,
    applied_authorisation: bool = False,
) -> Next:
    """What a saga run does at `step` (None: no such booking)."""
    if step == SagaStep.AUTHORISING:
        return authorising(driver, payment, charge, asked=asked)
    if step == SagaStep.CAPTURING:
        return capturing(driver, payment, booking, charge, asked=asked, applied_authorisation=applied_authorisation)
    if step == SagaStep.VOIDING:
        return Next.VOID_AT_PROVIDER
    if step in (SagaStep.REFUNDING, SagaStep.CANCEL_REFUNDING):
        return Next.REFUND
    return Next.WAIT  # resting or terminal: nothing for a saga run


def decline_reason(decline_code: str | None) -> str:
    return decline_code or "declined"


INTERRUPTED = "payment interrupted before the provider"


def settle_capture(still_held: bool) -> SagaStep:
    """The money is captured: confirmed if the nights were still held, else it goes back (a capture
    after the hold ended: expired by an operator, recovered late)."""
    return SagaStep.CONFIRMED if still_held else SagaStep.REFUNDING


def refund_owed(step: str, *, paid: int, by_policy: int | None) -> int:
    """`refunding` gives back everything paid; `cancel_refunding` what the cancellation policy said."""
    return paid if step == SagaStep.REFUNDING else by_policy


def after_refund(step: str) -> SagaStep:
    return SagaStep.COMPENSATED if step == SagaStep.REFUNDING else SagaStep.CANCELLED


class Trouble(StrEnum):
    """What a run does when the provider times out or fails mid-step."""

    BACK_TO_HELD = "back-to-held"  # nothing reserved: the saga returns to held, 502, the guest may retry
    ANSWER_PENDING = "answer-pending"  # 202: the booking stays held until a webhook or recovery settles it
    GIVE_UP = "give-up"  # 502: the saga stays where it is; recovery settles it
    RETRY_LATER = "retry-later"  # webhook or recovery: note the attempt, the next pass tries again


def provider_trouble(driver: Driver, *, timeout: bool, authorising: bool = False) -> Trouble:
    """`authorising`: the authorise call itself failed (not a capture or a compensation)."""
    if driver is not Driver.LIVE:
        return Trouble.RETRY_LATER
    if timeout:
        return Trouble.ANSWER_PENDING
    return Trouble.BACK_TO_HELD if authorising else Trouble.GIVE_UP
