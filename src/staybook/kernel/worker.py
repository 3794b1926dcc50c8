"""The worker: outbox relay, event consumers and periodic jobs in one asyncio process.

Run several for throughput and failover: relays split the outbox with SKIP
LOCKED, durable consumers share cursors, and jobs are written to be safe when
two workers run them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import structlog

from staybook.kernel import metrics
from staybook.kernel.idempotency import IdempotencyStore
from staybook.kernel.outbox import purge_handled
from staybook.kernel.runtime import PeriodicJob, Runtime
from staybook.kernel.tasks import cancel_all

log = structlog.get_logger("staybook.worker")


async def _purge(runtime: Runtime) -> None:
    removed = await purge_handled(runtime.db, timedelta(hours=runtime.settings.outbox_retention_hours))
    if any(removed):
        log.info("purged handled events", context={"outbox": removed[0], "inbox": removed[1]})


async def _purge_idempotency_keys(runtime: Runtime) -> None:
    await IdempotencyStore(runtime.db, runtime.settings.booking.idempotency_ttl_seconds).purge_expired()


async def _consumer_metrics(runtime: Runtime) -> None:
    """Each durable consumer's unacknowledged messages and waiting dead letters, as gauges."""
    for subscription in runtime.wiring.subscriptions:
        pending = await runtime.bus.pending(subscription.consumer, subscription.subject)
        if pending is not None:
            metrics.CONSUMER_PENDING.labels(subscription.consumer).set(pending)
    for consumer in await runtime.dead_letters.consumers():
        metrics.DEAD_LETTERS.labels(consumer.consumer).set(consumer.waiting)


KERNEL_JOBS = [
    PeriodicJob("idempotency.purge", 600, lambda runtime, _: _purge_idempotency_keys(runtime)),
    PeriodicJob("outbox.purge", 3600, lambda runtime, _: _purge(runtime)),
    PeriodicJob("outbox.backlog", 15, lambda runtime, _: runtime.relay.backlog()),
    PeriodicJob("database.replica-lag", 5, lambda runtime, _: runtime.db.replica_lag_seconds()),
    PeriodicJob("consumers.metrics", 15, lambda runtime, _: _consumer_metrics(runtime)),
]


class Worker:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.stop_event = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    async def start(self, *, relay: bool = True, consumers: bool = True, jobs: bool = True) -> None:
        loop = asyncio.get_running_loop()
        # Consumers first: an event relayed before its consumer subscribed would be lost on the
        # in-process bus (JetStream durables declared with DeliverPolicy.ALL would still see it).
        if consumers:
            await self.runtime.consumers.start(self.runtime.wiring.subscriptions)
        if relay:
            self._tasks.append(loop.create_task(self.runtime.relay.run(self.stop_event), name="outbox-relay"))
        if jobs:
            for job in [*KERNEL_JOBS, *self.runtime.wiring.jobs]:
                self._tasks.append(loop.create_task(self._repeat(job), name=f"job:{job.name}"))
        log.info(
            "worker started",
            context={
                "bus": self.runtime.bus.kind,
                "subscriptions": len(self.runtime.wiring.subscriptions),
                "jobs": [j.name for j in [*KERNEL_JOBS, *self.runtime.wiring.jobs]] if jobs else [],
            },
        )

    async def _repeat(self, job: PeriodicJob) -> None:
        while not self.stop_event.is_set():
            try:
                await job.run(self.runtime, job.deps)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.exception("periodic job failed", error_type=type(error).__name__, context={"job": job.name})
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), timeout=job.interval_seconds)

    async def stop(self) -> None:
        self.stop_event.set()
        await cancel_all(self._tasks)
        if self._tasks:
            log.info("worker stopped")
        self._tasks.clear()

    async def run_forever(self) -> None:
        await self.start()
        try:
            await self.stop_event.wait()
        finally:
            await self.stop()
