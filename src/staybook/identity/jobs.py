"""The identity context's periodic jobs: anchoring the audit chain."""

from __future__ import annotations

from staybook.identity import anchor
from staybook.kernel.runtime import PeriodicJob

# Interval 0: the job waits `identity.audit_anchor_interval_seconds` itself (a setting).
JOBS = [PeriodicJob("identity.audit-anchor", 0, lambda runtime, _: anchor.run_anchoring(runtime))]
