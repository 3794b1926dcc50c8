"""Prometheus metrics of the payments context (payment success alert)."""

from __future__ import annotations

from prometheus_client import Counter

PAYMENTS = Counter("staybook_payments_total", "Payments by result: succeeded, declined, failed, refunded", ["result"])
