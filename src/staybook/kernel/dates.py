"""The date checks every route taking dates runs before it does any work with them.

A stay or a range is walked night by night further on (prices, cache keys, calendar rows), so
its size is decided here first: 9999-12-30 as a check-out is refused in microseconds instead of
being expanded into three million nights. The bookable window starts yesterday (UTC), so a guest
in a time zone ahead of UTC can still book "tonight"; the exact "not in the past at the property"
check follows once the property's time zone is known.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from staybook.kernel.errors import InvalidInput


def today_in(timezone: str, now: datetime | None = None) -> date:
    """The calendar date at a place at `now` (default: this instant); stays are in local dates.

    Every UTC offset in use and every transition between them falls on a quarter hour of UTC, so
    the local date cannot change inside a UTC quarter hour: it is computed once per zone and quarter
    (the availability hot path asks on every request).
    """
    return _local_date(timezone, int((now or datetime.now(UTC)).timestamp()) // 900)


@lru_cache(maxsize=2048)
def _local_date(timezone: str, quarter_hour: int) -> date:
    return datetime.fromtimestamp(quarter_hour * 900, UTC).astimezone(ZoneInfo(timezone)).date()


def bookable_window(horizon_days: int, *, today: date | None = None) -> tuple[date, date]:
    """The first check-in day and the last check-out day anyone can book."""
    origin = (today or datetime.now(UTC).date()) - timedelta(days=1)
    return origin, origin + timedelta(days=horizon_days + 1)


def check_stay(
    check_in: date,
    check_out: date,
    *,
    max_nights: int,
    horizon_days: int,
    location: str = "query",
    names: tuple[str, str] = ("check_in", "check_out"),
) -> int:
    """Refuses a stay that is reversed, longer than `max_nights` or outside the bookable window;
    returns its night count. Field paths are `<location>.<name>` (query.check_out, body.check_in)."""
    first_field, last_field = (f"{location}.{name}" for name in names)
    if check_out <= check_in:
        raise InvalidInput(f"{names[1]} must be after {names[0]}", field=last_field)
    nights = (check_out - check_in).days
    if nights > max_nights:
        raise InvalidInput(f"A stay may last at most {max_nights} nights, not {nights}", field=last_field)
    first, last = bookable_window(horizon_days)
    if check_in < first:
        raise InvalidInput(f"{names[0]} {check_in} is in the past", field=first_field)
    if check_out > last:
        raise InvalidInput(f"{names[1]} is beyond the bookable horizon ({last.isoformat()})", field=last_field)
    return nights


def check_range(
    start: date, end: date, *, longest: int, location: str = "query", names: tuple[str, str] = ("from", "to")
) -> int:
    """Refuses a [start, end) range that is reversed or longer than `longest` days (calendar reads,
    where past nights are fine); returns its length in days."""
    if end <= start:
        raise InvalidInput(f"'{names[1]}' must be after '{names[0]}'", field=f"{location}.{names[1]}")
    days = (end - start).days
    if days > longest:
        raise InvalidInput(f"A range covers at most {longest} days, not {days}", field=f"{location}.{names[1]}")
    return days
