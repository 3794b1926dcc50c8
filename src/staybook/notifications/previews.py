"""A sample context for every notification type, shaped like what the event handlers store.

Used to render all templates at start-up, by `staybook notify preview TYPE` and in tests.
"""

from __future__ import annotations

from typing import Any

SAMPLE_BOOKING: dict[str, Any] = {
    "booking_id": "0193a7c0-0000-7000-8000-000000000001",
    "reference": "SB-7K3Q9D",
    "status": "confirmed",
    "guest_user_id": "0193a7c0-0000-7000-8000-0000000000a1",
    "guest": {"name": "Ada Lovelace", "email": "ada@example.org", "phone": "+4915112345678", "locale": "en"},
    "host_id": "0193a7c0-0000-7000-8000-0000000000b1",
    "property": {
        "property_id": "0193a7c0-0000-7000-8000-0000000000c1",
        "name": "Haus am See",
        "address": "Seestraße 12",
        "city": "Berlin",
        "country": "DE",
        "timezone": "Europe/Berlin",
        "check_in_time": "15:00",
        "check_out_time": "11:00",
    },
    "room_type": {"room_type_id": "0193a7c0-0000-7000-8000-0000000000d1", "name": "Double room with lake view"},
    "check_in": "2027-03-12",
    "check_out": "2027-03-15",
    "nights": 3,
    "units": 1,
    "guests": 2,
    "total": {"amount": 42900, "currency": "EUR"},
    "expires_at": "2027-03-01T10:10:00+00:00",
    "cancellation_policy": "flexible",
}

_GUEST = {"recipient_name": "Ada Lovelace", "timezone": "Europe/Berlin", "booking": SAMPLE_BOOKING}
_HOST = {"recipient_name": "Grace Hopper", "timezone": "Europe/Berlin", "booking": SAMPLE_BOOKING}

SAMPLES: dict[str, dict[str, Any]] = {
    "booking_held": _GUEST,
    "booking_confirmed": _GUEST,
    "booking_payment_failed": {**_GUEST, "reason": "card_declined"},
    "booking_expired": _GUEST,
    "booking_cancelled": {**_GUEST, "cancelled_by": "guest", "refund": {"amount": 42900, "currency": "EUR"}},
    "payment_refunded": {**_GUEST, "refund": {"amount": 42900, "currency": "EUR"}},
    "host_new_booking": _HOST,
    "host_booking_cancelled": {**_HOST, "cancelled_by": "guest"},
    "sign_in_alert": {
        "recipient_name": "Ada Lovelace",
        "timezone": "Europe/Berlin",
        "sign_in": {"ip": "203.0.113.7", "user_agent": "Firefox on Linux", "at": "2027-03-01T09:30:00+00:00"},
    },
}
