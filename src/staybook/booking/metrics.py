"""Prometheus metrics of the booking context (the booking dashboard, the business alerts)."""

from __future__ import annotations

from prometheus_client import Counter

BOOKINGS = Counter(
    "staybook_bookings_total", "Bookings by outcome: held, confirmed, expired, payment_failed, cancelled", ["outcome"]
)
BOOKING_VALUE = Counter(
    "staybook_booking_value_minor_total",
    "Sum of confirmed bookings' totals, in the currency's minor units",
    ["currency"],
)
