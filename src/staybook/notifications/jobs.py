"""The notifications context's periodic jobs: the sender, and the queue depth for the metrics."""

from __future__ import annotations

from staybook.kernel.runtime import PeriodicJob
from staybook.notifications.delivery import measure_queue, run_sender

JOBS = [
    # Interval 0: run_sender does its own waiting (for a wake-up or the poll interval).
    PeriodicJob("notifications.send", 0, run_sender),
    PeriodicJob("notifications.queue-depth", 15, lambda runtime, _: measure_queue(runtime)),
]
