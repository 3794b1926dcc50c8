"""The date checks every route taking dates runs before it does any work with them.

A stay or a range is walked night by night further on (prices, cache keys, calendar rows), so
its size is decided here first: 9999-12-30 as a check-out is refused in microseconds instead of
being expanded into three million nights. The bookable window starts yesterday (UTC), so a guest
in a time zone ahead of UTC can still book "tonight"; the exact "not in the past at the property"
check follows once the property's time zone is known.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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


class InvalidStay(InvalidInput):
    """A stay's dates break a rule. `field` is the date's name alone (`check_in`, `check_out`): the
    rule does not know where the dates were read; the edge that read them adds it (`stay_fields_in`)."""

    def __init__(self, detail: str, *, field: str) -> None:
        super().__init__(detail, field=field)
        self.field = field


def stay_nights(check_in: date, check_out: date, *, max_nights: int | None = None) -> int:
    """THE rule of a stay's dates: check-out after check-in, and (given `max_nights`) no longer than
    that; returns the night count. Every check of a stay starts here."""
    if check_out <= check_in:
        raise InvalidStay("check_out must be after check_in", field="check_out")
    nights = (check_out - check_in).days
    if max_nights is not None and nights > max_nights:
        raise InvalidStay(f"A stay may last at most {max_nights} nights, not {nights}", field="check_out")
    return nights


def check_stay(check_in: date, check_out: date, *, max_nights: int, horizon_days: int) -> int:
    """Refuses a stay that is reversed, longer than `max_nights` or outside the bookable window;
    returns its night count. Before the property is known (its time zone decides "today" there)."""
    nights = stay_nights(check_in, check_out, max_nights=max_nights)
    first, last = bookable_window(horizon_days)
    if check_in < first:
        raise InvalidStay(f"check_in {check_in} is in the past", field="check_in")
    if check_out > last:
        raise InvalidStay(f"check_out is beyond the bookable horizon ({last.isoformat()})", field="check_out")
    return nights


def check_stay_at_property(check_in: date, check_out: date, *, today: date, max_nights: int) -> int:
    """`stay_nights`, and check-in not before `today`, the date at the property; returns the night count."""
    nights = stay_nights(check_in, check_out, max_nights=max_nights)
    if check_in < today:
        raise InvalidStay(f"check_in {check_in} is in the past (today is {today} at the property)", field="check_in")
    return nights


@contextmanager
def stay_fields_in(location: str) -> Iterator[None]:
    """At an HTTP edge: a stay refused inside is answered with the field paths of where its dates
    were read (`query.check_out`, `body.check_in`)."""
    try:
        yield
    except InvalidStay as refused:
        raise InvalidInput(refused.detail, field=f"{location}.{refused.field}") from None


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
