"""Prometheus metrics of the notifications context (the runbook's notification dashboard)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SENT = Counter("staybook_notifications_sent_total", "Messages handed to the mail server or provider", ["channel"])
FAILED = Counter(
    "staybook_notifications_failed_total", "Failed send attempts by kind (temporary, permanent)", ["channel", "kind"]
)
RETRIED = Counter("staybook_notifications_retried_total", "Deliveries scheduled for another attempt", ["channel"])
DEAD = Counter("staybook_notifications_dead_total", "Deliveries that exhausted their attempts", ["channel"])
QUEUE_DEPTH = Gauge(
    "staybook_notifications_queue_depth", "Pending deliveries (due now or later)", multiprocess_mode="max"
)
DELIVERY_LATENCY = Histogram(
    "staybook_notifications_delivery_latency_seconds",
    "Time from recording a delivery to sending it",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0),
)
