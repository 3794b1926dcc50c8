"""A confirmed booking as an iCalendar file the guest adds to a calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime

from icalendar import Calendar, Event


def booking_calendar(view: dict) -> bytes:
    """One all-day event over the stay ([check_in, check_out): DTEND is the departure day)."""
    calendar = Calendar()
    calendar.add("prodid", "-//staybook//booking//EN")
    calendar.add("version", "2.0")
    event = Event()
    prop = view["property"]
    event.add("uid", f"{view['id']}@staybook")
    event.add("dtstamp", datetime.now(UTC))
    event.add("dtstart", date.fromisoformat(view["check_in"]))
    event.add("dtend", date.fromisoformat(view["check_out"]))
    event.add("summary", f"{prop.get('name', 'Stay')} ({view['reference']})")
    location = ", ".join(part for part in (prop.get("address"), prop.get("city"), prop.get("country")) if part)
    if location:
        event.add("location", location)
    event.add("description", f"{view['room_type']['name']}, {view['guests']} guests. Booking {view['reference']}.")
    calendar.add_component(event)
    return calendar.to_ical()
