"""Cancellation policies and the booking lifecycle, property-based (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from staybook.booking import policy
from staybook.booking.domain import LIFECYCLE, BookingStatus
from staybook.booking.policy import CancellationPolicy, refund_amount
from staybook.kernel.states import IllegalTransition

STARTS = datetime(2031, 6, 1, 15, 0, tzinfo=UTC)
nightly_prices = st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=30)
policies = st.sampled_from(list(CancellationPolicy))
notice = st.timedeltas(min_value=timedelta(days=-5), max_value=timedelta(days=400))


@given(policies, nightly_prices, notice, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=365)))
def test_refund_is_between_nothing_and_everything(kind, nightly, before, booked_earlier):
    cancelled_at = STARTS - before
    refund = refund_amount(
        kind, nightly, booked_at=cancelled_at - booked_earlier, starts_at=STARTS, cancelled_at=cancelled_at
    )
    assert isinstance(refund, int) and 0 <= refund <= sum(nightly)


@given(policies, nightly_prices, notice, notice)
def test_cancelling_later_never_refunds_more(kind, nightly, first, second):
    booked_at = STARTS - timedelta(days=500)
    early, late = STARTS - max(first, second), STARTS - min(first, second)
    assert refund_amount(kind, nightly, booked_at=booked_at, starts_at=STARTS, cancelled_at=early) >= refund_amount(
        kind, nightly, booked_at=booked_at, starts_at=STARTS, cancelled_at=late
    )


@given(policies, nightly_prices, notice)
def test_host_cancellation_refunds_everything(kind, nightly, before):
    at = STARTS - before
    assert refund_amount(kind, nightly, booked_at=at, starts_at=STARTS, cancelled_at=at, by_host=True) == sum(nightly)


@given(policies, nightly_prices, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)))
def test_nothing_back_after_check_in(kind, nightly, after):
    at = STARTS + after
    assert refund_amount(kind, nightly, booked_at=at, starts_at=STARTS, cancelled_at=at) == 0


def test_policy_examples():
    nightly = [100, 200, 300]

    def refund(kind, days, booked_days_before=30):
        at = STARTS - timedelta(days=days)
        return refund_amount(
            kind, nightly, booked_at=STARTS - timedelta(days=booked_days_before), starts_at=STARTS, cancelled_at=at
        )

    assert refund("flexible", 2) == 600 and refund("flexible", 0.5) == 500
    assert refund("moderate", 6) == 600 and refund("moderate", 3) == 250
    assert refund("strict", 20, booked_days_before=21) == 600  # within 48 h of booking
    assert refund("strict", 20) == 300 and refund("strict", 3) == 0


def test_check_in_moment_uses_the_property_timezone():
    moment = policy.check_in_moment(date(2031, 1, 10), "15:00", "Asia/Tokyo")
    assert moment.astimezone(UTC) == datetime(2031, 1, 10, 6, 0, tzinfo=UTC)


@given(st.sampled_from(list(BookingStatus)), st.sampled_from(list(BookingStatus)))
def test_only_listed_transitions_are_allowed(current, wanted):
    if wanted in LIFECYCLE.targets(current):
        assert LIFECYCLE.require(current, wanted) == wanted
    else:
        with pytest.raises(IllegalTransition):
            LIFECYCLE.require(current, wanted)


@dataclass(frozen=True)
class Inventory:
    """What a booking in a given status holds on each of its nights (DESIGN.md "The booking core")."""

    held: int
    booked: int


def inventory_of(status: str, units: int) -> Inventory:
    if status == BookingStatus.HELD:
        return Inventory(held=units, booked=0)
    if status == BookingStatus.CONFIRMED:
        return Inventory(held=0, booked=units)
    return Inventory(held=0, booked=0)


class BookingLifecycle(RuleBasedStateMachine):
    """Random sequences of hold/pay/fail/expire/cancel against one night with `total` units:
    the counters the statuses imply never oversell and never go negative."""

    total = 3

    def __init__(self) -> None:
        super().__init__()
        self.bookings: list[list] = []  # [status, units]

    def _used(self) -> int:
        return sum(inventory_of(s, u).held + inventory_of(s, u).booked for s, u in self.bookings)

    @rule(units=st.integers(1, 3))
    def hold(self, units):
        if self._used() + units <= self.total:
            self.bookings.append(["held", units])

    @precondition(lambda self: self.bookings)
    @rule(index=st.integers(0, 50), wanted=st.sampled_from(list(BookingStatus)))
    def move(self, index, wanted):
        booking = self.bookings[index % len(self.bookings)]
        try:
            booking[0] = LIFECYCLE.require(booking[0], wanted)
        except IllegalTransition:
            pass

    @invariant()
    def never_oversold(self):
        held = sum(inventory_of(s, u).held for s, u in self.bookings)
        booked = sum(inventory_of(s, u).booked for s, u in self.bookings)
        assert 0 <= held and 0 <= booked and held + booked <= self.total

    @invariant()
    def terminal_states_stay_terminal(self):
        for status, _ in self.bookings:
            assert status in set(BookingStatus)


TestBookingLifecycle = BookingLifecycle.TestCase
