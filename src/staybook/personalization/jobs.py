"""Periodic work of personalization, run by `staybook worker` (several workers share it):

- `personalization.aggregate`: the aggregator, a durable consumer of the signal stream that
  folds batches into profiles, popularity and co-visitation (runs until the worker stops);
- `personalization.archive`: a second durable consumer writing the Parquet archive;
- `personalization.retrain`: fits a new model from the archive every `retrain_interval_seconds`.

Each job gets the process's `Personalization` (bound by the composition root).
"""

from __future__ import annotations

import asyncio

from staybook.kernel.runtime import PeriodicJob, Runtime
from staybook.kernel.settings import PersonalizationSettings
from staybook.personalization import service
from staybook.personalization.service import Personalization


async def run_aggregator(runtime: Runtime, deps: Personalization) -> None:
    await deps.signal_log.consume("aggregate", lambda batches: service.aggregate(deps, batches), _stopped())


async def run_archiver(runtime: Runtime, deps: Personalization) -> None:
    await deps.signal_log.consume("archive", lambda batches: service.archive(deps, batches), _stopped())


async def retrain(runtime: Runtime, deps: Personalization) -> None:
    await service.train(runtime, deps)


def jobs(settings: PersonalizationSettings) -> list[PeriodicJob]:
    found = [
        PeriodicJob("personalization.aggregate", 1, run_aggregator),
        PeriodicJob("personalization.archive", 1, run_archiver),
    ]
    interval = settings.retrain_interval_seconds
    if interval:
        found.append(PeriodicJob("personalization.retrain", interval, _after_first_interval(interval, retrain)))
    return found


def _stopped() -> asyncio.Event:
    """Consumers run until the worker cancels their task."""
    return asyncio.Event()


def _after_first_interval(interval: float, run):
    """Waits one interval before the first run: a worker's start is no time to train."""
    started = False

    async def job(runtime: Runtime, deps: Personalization) -> None:
        nonlocal started
        if not started:
            started = True
            await asyncio.sleep(interval)
        await run(runtime, deps)

    return job
