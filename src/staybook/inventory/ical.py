"""iCalendar export and import of blocked nights: what channel managers exchange to sync calendars.

A blocked range is an all-day VEVENT with DTSTART = first night and DTEND = the
morning after the last night (exclusive), as Airbnb and Booking.com write them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import icalendar

from staybook.inventory.events import NightSnapshot
from staybook.kernel.errors import InvalidInput

MAX_IMPORTED_NIGHTS = 1100
# A channel manager's feed of a year of bookings is tens of kilobytes.
MAX_ICAL_BYTES = 2_000_000


def blocked_reason(night: NightSnapshot) -> str | None:
    if night.closed:
        return "Closed"
    if night.available <= 0:
        return "Booked"
    return None


def blocked_ranges(nights: Sequence[NightSnapshot]) -> list[tuple[date, date, str]]:
    """Contiguous runs of nights with the same blocking reason, as [start, end) ranges."""
    ranges: list[tuple[date, date, str]] = []
    for night in sorted(nights, key=lambda n: n.night):
        reason = blocked_reason(night)
        if reason is None:
            continue
        if ranges and ranges[-1][1] == night.night and ranges[-1][2] == reason:
            ranges[-1] = (ranges[-1][0], night.night + timedelta(days=1), reason)
        else:
            ranges.append((night.night, night.night + timedelta(days=1), reason))
    return ranges


def export_calendar(room_type_id: uuid.UUID, name: str, nights: Sequence[NightSnapshot]) -> bytes:
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//staybook//calendar export//EN")
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", name)
    stamp = datetime.now().astimezone()
    for start, end, reason in blocked_ranges(nights):
        event = icalendar.Event()
        # Stable per range start, so a channel re-reading the feed updates rather than duplicates.
        event.add("uid", f"{room_type_id}-{start.isoformat()}@staybook")
        event.add("dtstamp", stamp)
        event.add("dtstart", start)
        event.add("dtend", end)
        event.add("summary", reason)
        calendar.add_component(event)
    return calendar.to_ical()


@dataclass(frozen=True)
class BlockedNights:
    events: int
    nights: list[date]


def _as_date(value) -> date:
    return value.date() if isinstance(value, datetime) else value


def blocked_nights(data: bytes, *, window: tuple[date, date]) -> BlockedNights:
    """The nights in [window) covered by the file's events; 422 for anything that is not an iCalendar.

    Each event is clipped to the window before it is expanded: one VEVENT from 0001 to 9999 costs
    as much as one covering the window, not three million nights."""
    if len(data) > MAX_ICAL_BYTES:
        raise InvalidInput(f"An iCalendar file may be at most {MAX_ICAL_BYTES} bytes", field="body.file")
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except (ValueError, IndexError, KeyError, UnicodeDecodeError) as error:
        raise InvalidInput("The file is not an iCalendar (.ics) file", field="body.file") from error
    if calendar.name != "VCALENDAR":
        raise InvalidInput("The file is not an iCalendar (.ics) file", field="body.file")
    nights: set[date] = set()
    events = 0
    for event in calendar.walk("VEVENT"):
        start = event.get("dtstart")
        if start is None:
            continue
        end = event.get("dtend")
        first = _as_date(start.dt)
        last = _as_date(end.dt) if end is not None else first
        if not isinstance(first, date) or not isinstance(last, date):
            raise InvalidInput("An event's DTSTART and DTEND must be dates or times", field="body.file")
        events += 1
        if first >= window[1]:
            continue
        last = max(last, first + timedelta(days=1))  # an event without an end (or ending early) is one night
        first, last = max(first, window[0]), min(last, window[1])
        for offset in range((last - first).days):
            nights.add(first + timedelta(days=offset))
        if len(nights) > MAX_IMPORTED_NIGHTS:
            raise InvalidInput(f"At most {MAX_IMPORTED_NIGHTS} nights can be imported at once", field="body.file")
    return BlockedNights(events, sorted(nights))
