"""Prometheus metrics of the search context (search latency alert, search dashboard)."""

from __future__ import annotations

from prometheus_client import Gauge, Histogram

from staybook.kernel.metrics import LATENCY_BUCKETS

SEARCH_DURATION = Histogram(
    "staybook_search_duration_seconds", "Time to answer a search, response cache hits included", buckets=LATENCY_BUCKETS
)
INDEX_LAG = Gauge(
    "staybook_search_index_lag_seconds",
    "Age of the newest catalog or inventory event this process's search index applied, when applied",
    multiprocess_mode="max",
)
