"""Every decision of the booking and its payment saga, table-driven, without I/O (booking/domain.py).

Each row is (what a saga run knows) -> what it does; together the rows reach every `Next` and
every `Trouble`, and each step change a decision leads to is one the saga's table allows.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from staybook.booking.domain import (
    IN_FLIGHT,
    LIFECYCLE,
    SAGA,
    Booking,
    BookingStatus,
    Driver,
    HoldExpired,
    Next,
    PaymentInProgress,
    SagaStep,
    Trouble,
    after_refund,
    cancelled_by,
    decide,
    decline_reason,
    provider_trouble,
    refund_owed,
    settle_capture,
)
from staybook.kernel.errors import Conflict
from staybook.kernel.states import IllegalTransition

LIVE, WEBHOOK, RECOVERY = Driver.LIVE, Driver.WEBHOOK, Driver.RECOVERY
A, C = SagaStep.AUTHORISING, SagaStep.CAPTURING
ASKED_HELD = {"payment": "authorised", "booking": "held", "asked": True}  # recovery, after provider.find

# (step, driver, facts) -> decision. facts: payment (staybook's record), booking (its status),
# charge (the provider's status once asked), asked, applied_authorisation.
DECISIONS = [
    # authorising: the live request authorises, recovery asks, a webhook about a pending payment waits
    (A, LIVE, {"payment": "pending"}, Next.AUTHORISE),
    (A, RECOVERY, {"payment": "pending"}, Next.ASK_PROVIDER),
    (A, WEBHOOK, {"payment": "pending"}, Next.WAIT),
    # ... with the provider's answer
    (A, LIVE, {"payment": "pending", "charge": "authorised", "asked": True}, Next.CAPTURE),
    (A, LIVE, {"payment": "pending", "charge": "declined", "asked": True}, Next.FAIL_DECLINED),
    (A, RECOVERY, {"payment": "pending", "charge": None, "asked": True}, Next.FAIL_INTERRUPTED),
    (A, RECOVERY, {"payment": "pending", "charge": "declined", "asked": True}, Next.FAIL_DECLINED),
    (A, RECOVERY, {"payment": "pending", "charge": "authorised", "asked": True}, Next.RECORD_AUTHORISATION),
    (A, RECOVERY, {"payment": "pending", "charge": "captured", "asked": True}, Next.RECORD_AUTHORISATION),
    # a webhook recorded the provider's news before the saga moved: take it from the payment's record
    (A, WEBHOOK, {"payment": "authorised"}, Next.RECORD_AUTHORISATION),
    (A, WEBHOOK, {"payment": "captured"}, Next.RECORD_AUTHORISATION),
    (A, WEBHOOK, {"payment": "failed"}, Next.FAIL_DECLINED),
    (A, RECOVERY, {"payment": "failed"}, Next.FAIL_DECLINED),
    (A, RECOVERY, {"payment": "authorised"}, Next.RECORD_AUTHORISATION),
    # capturing: money already captured is settled by whoever comes
    (C, LIVE, {"payment": "captured", "booking": "held"}, Next.SETTLE_CAPTURE),
    (C, WEBHOOK, {"payment": "captured", "booking": "held"}, Next.SETTLE_CAPTURE),
    (C, RECOVERY, {"payment": "captured", "booking": "expired"}, Next.SETTLE_CAPTURE),
    # recovery of an authorised-but-unconfirmed payment: ask, then settle a capture or void
    (C, RECOVERY, {"payment": "authorised", "booking": "held"}, Next.ASK_PROVIDER),
    (C, RECOVERY, {**ASKED_HELD, "charge": "captured"}, Next.SETTLE_CAPTURE),
    (C, RECOVERY, {**ASKED_HELD, "charge": "refunded"}, Next.SETTLE_CAPTURE),
    (C, RECOVERY, {**ASKED_HELD, "charge": "authorised"}, Next.VOID),
    (C, RECOVERY, {**ASKED_HELD, "charge": None}, Next.VOID),
    # a late webhook: it captures only an authorisation it applied itself, and only for a held booking
    (C, WEBHOOK, {"payment": "authorised", "booking": "held"}, Next.WAIT),
    (C, WEBHOOK, {"payment": "authorised", "booking": "held", "applied_authorisation": True}, Next.CAPTURE),
    (C, WEBHOOK, {"payment": "authorised", "booking": "expired", "applied_authorisation": True}, Next.VOID),
    (C, LIVE, {"payment": "authorised", "booking": "held"}, Next.CAPTURE),
    (C, LIVE, {"payment": "authorised", "booking": "expired"}, Next.VOID),
    # compensation steps: whoever runs the saga next repeats the provider call
    *((SagaStep.VOIDING, driver, {}, Next.VOID_AT_PROVIDER) for driver in Driver),
    *((SagaStep.REFUNDING, driver, {}, Next.REFUND) for driver in Driver),
    *((SagaStep.CANCEL_REFUNDING, driver, {}, Next.REFUND) for driver in Driver),
    # resting and terminal steps, and an unknown booking: nothing for a saga run
    *((step, driver, {}, Next.WAIT) for step in (*sorted(SAGA.terminal), *(SagaStep.HELD, SagaStep.CONFIRMED), None)
      for driver in Driver),
]  # fmt: skip


@pytest.mark.parametrize(("step", "driver", "facts", "expected"), DECISIONS)
def test_each_saga_decision(step, driver, facts, expected):
    assert decide(step, driver, **facts) is expected


def test_the_table_reaches_every_decision():
    assert {row[-1] for row in DECISIONS} == set(Next)


# Where each decision moves the saga from its step (the I/O in saga.py does these moves).
MOVES = {
    (A, Next.FAIL_INTERRUPTED): SagaStep.FAILED,
    (A, Next.FAIL_DECLINED): SagaStep.FAILED,
    (A, Next.RECORD_AUTHORISATION): C,
    (A, Next.CAPTURE): settle_capture(True),
    (C, Next.VOID): SagaStep.VOIDING,
    (SagaStep.VOIDING, Next.VOID_AT_PROVIDER): SagaStep.COMPENSATED,
    (SagaStep.REFUNDING, Next.REFUND): after_refund(SagaStep.REFUNDING),
    (SagaStep.CANCEL_REFUNDING, Next.REFUND): after_refund(SagaStep.CANCEL_REFUNDING),
}


@pytest.mark.parametrize(("move", "to"), list(MOVES.items()))
def test_every_move_a_decision_makes_is_in_the_saga_table(move, to):
    step, _ = move
    assert SAGA.can(step, to)


@pytest.mark.parametrize("expected", [SagaStep.AUTHORISING, SagaStep.CAPTURING])
@pytest.mark.parametrize(("still_held", "step"), [(True, SagaStep.CONFIRMED), (False, SagaStep.REFUNDING)])
def test_a_capture_confirms_a_held_booking_and_refunds_one_whose_hold_ended(expected, still_held, step):
    assert settle_capture(still_held) is step
    assert SAGA.can(expected, step)


def test_refunds_give_back_what_was_paid_or_what_the_policy_said():
    assert refund_owed(SagaStep.REFUNDING, paid=900, by_policy=None) == 900
    assert refund_owed(SagaStep.CANCEL_REFUNDING, paid=900, by_policy=450) == 450
    assert after_refund(SagaStep.REFUNDING) is SagaStep.COMPENSATED
    assert after_refund(SagaStep.CANCEL_REFUNDING) is SagaStep.CANCELLED


@pytest.mark.parametrize(
    ("driver", "timeout", "authorising", "trouble"),
    [
        (LIVE, False, True, Trouble.BACK_TO_HELD),  # nothing reserved: the guest may pay again
        (LIVE, True, True, Trouble.ANSWER_PENDING),
        (LIVE, True, False, Trouble.ANSWER_PENDING),
        (LIVE, False, False, Trouble.GIVE_UP),
        *((driver, timeout, authorising, Trouble.RETRY_LATER) for driver in (WEBHOOK, RECOVERY)
          for timeout in (True, False) for authorising in (True, False)),
    ],
)  # fmt: skip
def test_provider_trouble(driver, timeout, authorising, trouble):
    assert provider_trouble(driver, timeout=timeout, authorising=authorising) is trouble


def test_a_decline_without_a_code_is_declined():
    assert decline_reason(None) == "declined" and decline_reason("insufficient_funds") == "insufficient_funds"


def test_in_flight_steps_are_those_a_provider_call_may_be_pending_in():
    assert set(IN_FLIGHT) == {
        SagaStep.AUTHORISING,
        SagaStep.CAPTURING,
        SagaStep.VOIDING,
        SagaStep.REFUNDING,
        SagaStep.CANCEL_REFUNDING,
    }
    assert SAGA.terminal == {SagaStep.FAILED, SagaStep.COMPENSATED, SagaStep.EXPIRED, SagaStep.CANCELLED}
    assert LIFECYCLE.terminal == {BookingStatus.EXPIRED, BookingStatus.PAYMENT_FAILED, BookingStatus.CANCELLED}


# ------------------------------------------------------------------ the booking's own decisions

NOW = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
GUEST, HOST = uuid.uuid4(), uuid.uuid4()


def booking(status: str = "held", **changes) -> Booking:
    values = {
        "status": BookingStatus(status),
        "expires_at": NOW + timedelta(minutes=5),
        "check_in": date(2031, 6, 1),
        "created_at": NOW - timedelta(days=30),
        "units": 2,
        "nightly_prices": [{"night": "2031-06-01", "amount": 100}, {"night": "2031-06-02", "amount": 200}],
        "cancellation_policy": "flexible",
        "property": {"check_in_time": "15:00", "timezone": "Europe/Paris"},
    }
    return Booking(**{**values, **changes})


def test_a_held_booking_with_its_saga_at_rest_and_time_left_is_payable():
    booking().require_payable(SagaStep.HELD, NOW)


@pytest.mark.parametrize(
    ("status", "step", "expires_in", "error"),
    [
        *((status, SagaStep.HELD, 5, Conflict) for status in BookingStatus if status != BookingStatus.HELD),
        *(("held", step, 5, PaymentInProgress) for step in IN_FLIGHT),
        ("held", SagaStep.HELD, 0, HoldExpired),
        ("held", SagaStep.HELD, -1, HoldExpired),
    ],
)
def test_what_refuses_a_payment(status, step, expires_in, error):
    with pytest.raises(error) as raised:
        booking(status, expires_at=NOW + timedelta(minutes=expires_in)).require_payable(step, NOW)
    assert type(raised.value) is error


def test_only_a_held_booking_expires():
    assert booking("held").expire() is BookingStatus.EXPIRED
    for status in BookingStatus:
        if status != BookingStatus.HELD:
            with pytest.raises(IllegalTransition):
                booking(status).expire()


def test_a_failed_payment_fails_a_held_booking_and_leaves_any_other():
    assert booking("held").fail_payment() is BookingStatus.PAYMENT_FAILED
    for status in BookingStatus:
        if status != BookingStatus.HELD:
            assert booking(status).fail_payment() is None


def test_who_cancels():
    assert cancelled_by(is_admin=True, user_id=HOST, host_id=HOST) == "admin"
    assert cancelled_by(is_admin=False, user_id=HOST, host_id=HOST) == "host"
    assert cancelled_by(is_admin=False, user_id=GUEST, host_id=HOST) == "guest"


@pytest.mark.parametrize(
    ("by", "days_before", "refund", "step"),
    [
        ("guest", 10, 600, SagaStep.CANCEL_REFUNDING),  # flexible, early: in full (2 units x 300)
        ("guest", -1, 0, SagaStep.CANCELLED),  # after check-in: nothing back, nothing to ask the provider
        ("host", -1, 600, SagaStep.CANCEL_REFUNDING),  # a host refunds in full
        ("admin", 10, 600, SagaStep.CANCEL_REFUNDING),
    ],
)
def test_cancelling_a_confirmed_booking_refunds_by_policy(by, days_before, refund, step):
    at = datetime(2031, 6, 1, 13, 0, tzinfo=UTC) - timedelta(days=days_before)
    cancellation = booking("confirmed").cancel(by=by, at=at)
    assert (cancellation.by, cancellation.refund, cancellation.status, cancellation.saga_step) == (
        by,
        refund,
        BookingStatus.CANCELLED,
        step,
    )


@pytest.mark.parametrize("status", [s for s in BookingStatus if s != BookingStatus.CONFIRMED])
def test_only_a_confirmed_booking_can_be_cancelled(status):
    with pytest.raises(Conflict, match="only a confirmed booking can be cancelled"):
        booking(status).cancel(by="guest", at=NOW)


# ------------------------------------------------------------------ the docs show the tables as they are

SAGA_DOC = Path(__file__).parents[2] / "docs" / "booking-saga.md"


@pytest.mark.parametrize("table", [LIFECYCLE, SAGA], ids=["lifecycle", "saga"])
def test_the_saga_doc_shows_the_transition_tables(table):
    assert table.markdown() in SAGA_DOC.read_text()
