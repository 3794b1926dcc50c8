"""Prometheus metrics shared by every context, and the `/metrics` exposition.

Contexts define their own metrics next to their code with the same
`prometheus_client` types; names start with `staybook_`. With several uvicorn
workers `PROMETHEUS_MULTIPROC_DIR` is set and the exposition aggregates them.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "staybook_http_requests_total", "HTTP requests by route template and status", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "staybook_http_request_duration_seconds",
    "HTTP request latency by route template and status",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
OUTBOX_PUBLISHED = Counter("staybook_outbox_published_total", "Outbox events published to the bus")
OUTBOX_PUBLISH_ERRORS = Counter("staybook_outbox_publish_errors_total", "Failed outbox publish batches")
OUTBOX_BACKLOG = Gauge(
    "staybook_outbox_backlog", "Unpublished outbox events seen by the relay", multiprocess_mode="max"
)
OUTBOX_LAG = Histogram("staybook_outbox_lag_seconds", "Time from outbox write to bus publish", buckets=LATENCY_BUCKETS)
EVENTS_HANDLED = Counter("staybook_events_handled_total", "Events handled by consumers", ["consumer", "outcome"])
EVENT_HANDLER_LATENCY = Histogram(
    "staybook_event_handler_duration_seconds",
    "Event handler latency: one unit of work, a batch of events or one event",
    ["consumer"],
    buckets=LATENCY_BUCKETS,
)
CACHE_REQUESTS = Counter("staybook_cache_requests_total", "Cache lookups", ["namespace", "result"])
RATE_LIMITED = Counter("staybook_rate_limited_total", "Requests refused by a rate limit", ["rule"])
DB_REPLICA_LAG = Gauge(
    "staybook_db_replica_lag_seconds", "How far the read replica's replay is behind", multiprocess_mode="max"
)
DB_POOL_CONNECTIONS = Gauge(
    "staybook_db_pool_connections",
    "Database connections of the pool by state: in_use (checked out) or idle",
    ["state"],
    multiprocess_mode="livesum",
)
DB_POOL_WAITING = Gauge(
    "staybook_db_pool_waiting", "Requests waiting for a connection of an exhausted pool", multiprocess_mode="livesum"
)
DB_POOL_SIZE = Gauge(
    "staybook_db_pool_size", "Connections the pool may hold (size plus overflow)", multiprocess_mode="livesum"
)
OUTBOX_OLDEST_AGE = Gauge(
    "staybook_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox event", multiprocess_mode="max"
)
CONSUMER_PENDING = Gauge(
    "staybook_consumer_pending",
    "Messages a durable consumer has not acknowledged yet (JetStream)",
    ["consumer"],
    multiprocess_mode="max",
)
DEAD_LETTERS = Gauge(
    "staybook_dead_letters", "Dead letters waiting for replay, by consumer", ["consumer"], multiprocess_mode="max"
)
REDIS_FALLBACKS = Counter(
    "staybook_redis_fallbacks_total", "Calls answered without Redis because it was unreachable", ["part"]
)


_HTTP_SERIES: dict[tuple[str, str, int], tuple] = {}


def observe_http(method: str, route: str, status: int, seconds: float) -> None:
    # The labelled children are looked up once per (method, route, status): `labels()` takes a lock
    # and validates its arguments on every call, a measurable share of a fast request.
    series = _HTTP_SERIES.get((method, route, status))
    if series is None:
        code = str(status)
        series = _HTTP_SERIES[(method, route, status)] = (
            HTTP_REQUESTS.labels(method, route, code),
            HTTP_LATENCY.labels(method, route, code),
        )
    series[0].inc()
    series[1].observe(seconds)


def exposition() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
