"""Prometheus metrics of the identity context (identity dashboard, registration alert)."""

from __future__ import annotations

from prometheus_client import Counter

REGISTRATIONS = Counter("staybook_registrations_total", "Registrations by result: success, failure", ["result"])
LOGINS = Counter(
    "staybook_logins_total", "Password sign-ins by result: success, failure, locked, mfa_required", ["result"]
)
