"""The circuit breaker on new payments: opens after N failures in a row, refuses without calling
the provider while open, lets calls through after its moment, and reopens at the next failure
until a success closes it."""

from __future__ import annotations

import pytest

from staybook.payments.provider import CircuitOpen, ProviderBreaker, ProviderError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_failures_in_a_row_and_refuses_meanwhile():
    clock = Clock()
    breaker = ProviderBreaker(threshold=3, open_seconds=10, clock=clock)
    for _ in range(2):
        breaker.failed()
        breaker.check()  # still closed
    breaker.succeeded()  # a success breaks the run
    breaker.failed()
    breaker.failed()
    breaker.check()
    breaker.failed()
    with pytest.raises(CircuitOpen) as refused:
        breaker.check()
    assert isinstance(refused.value, ProviderError)  # callers handle it as the provider failing
    clock.now += 9.9
    with pytest.raises(CircuitOpen):
        breaker.check()


def test_half_open_after_its_moment():
    clock = Clock()
    breaker = ProviderBreaker(threshold=2, open_seconds=5, clock=clock)
    breaker.failed()
    breaker.failed()
    assert breaker.open
    clock.now += 5
    breaker.check()  # one call goes through
    breaker.failed()  # and fails: open again at once, without another run of failures
    with pytest.raises(CircuitOpen):
        breaker.check()
    clock.now += 5
    breaker.check()
    breaker.succeeded()
    breaker.failed()  # one failure after a success does not open it
    breaker.check()
    assert not breaker.open
