"""Cancellation policies: pure decisions, no I/O (the state machines are in domain.py).

Refunds are computed in integer minor units from the time left before check-in
(at the property's check-in time in its own timezone):

| policy | refund |
|---|---|
| flexible | full until 24 h before check-in; after that all but the first night |
| moderate | full until 5 days before; after that all but the first night, then half of the rest |
| strict | full within 48 h of booking if check-in is 14+ days away; half until 7 days before; then nothing |

After check-in nothing is refunded. A host (or an admin) cancelling refunds in full.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


class CancellationPolicy(StrEnum):
    FLEXIBLE = "flexible"
    MODERATE = "moderate"
    STRICT = "strict"


def check_in_moment(check_in: date, check_in_time: str, timezone: str) -> datetime:
    """The stay's start as an aware datetime: check-in day at the property's check-in hour, local time."""
    hours, minutes = (int(part) for part in check_in_time.split(":"))
    return datetime.combine(check_in, time(hours, minutes), tzinfo=ZoneInfo(timezone))


def refund_amount(
    policy: CancellationPolicy | str,
    nightly: Sequence[int],
    *,
    booked_at: datetime,
    starts_at: datetime,
    cancelled_at: datetime,
    by_host: bool = False,
) -> int:
    """How much of the stay's price (sum of `nightly`, minor units) goes back to the guest."""
    total = sum(nightly)
    if by_host:
        return total
    notice = starts_at - cancelled_at
    if notice <= timedelta(0):
        return 0
    first_night = nightly[0] if nightly else 0
    policy = CancellationPolicy(policy)
    if policy is CancellationPolicy.FLEXIBLE:
        return total if notice >= 24 * HOUR else total - first_night
    if policy is CancellationPolicy.MODERATE:
        return total if notice >= 5 * DAY else (total - first_night) // 2
    if notice >= 14 * DAY and cancelled_at - booked_at <= 48 * HOUR:
        return total
    return total // 2 if notice >= 7 * DAY else 0
