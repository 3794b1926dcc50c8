"""The runtime: every adapter a process needs, built from settings, started and closed in one place.

`create_app` builds one per API process (in its lifespan); `staybook worker`
builds one for the worker. Contexts reach it through `request.app.state.runtime`
(see `get_runtime`) or are handed it by the worker.

What a context owns in a process (search index, payment provider, mailer) is the value its
`bootstrap.lifespan(runtime)` yields. The composition root binds it into the context's
subscriptions and jobs (`Wiring.bind`) and keeps it in `runtime.context_deps`, which routes
read through `context_dependency(context)`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from fastapi import Request

from staybook.kernel.bus import Bus, create_bus
from staybook.kernel.cache import Cache, MemoryCache, RedisCache
from staybook.kernel.consumers import ConsumerRunner, DeadLetters, ReplicaSubscription, Subscription
from staybook.kernel.db import Database, ping
from staybook.kernel.fallback import FallbackCache, FallbackRateLimiter, RedisBreaker
from staybook.kernel.orm import utcnow
from staybook.kernel.outbox import OutboxRelay
from staybook.kernel.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from staybook.kernel.security import TokenSigner, TokenVersions
from staybook.kernel.settings import Settings

log = structlog.get_logger("staybook.runtime")

ReadyCheck = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class PeriodicJob:
    """Work the worker repeats: expire holds, roll the calendar forward, purge the outbox."""

    name: str
    interval_seconds: float
    run: Callable[[Runtime, Any], Awaitable[Any]]  # (runtime, the context's deps)
    context: str = ""
    deps: Any = None


PersonalDataExport = Callable[["Runtime", uuid.UUID], Awaitable[dict[str, Any]]]
PersonalDataReseal = Callable[["Runtime", int], Awaitable[int]]


@dataclass(frozen=True)
class Adapters:
    """Adapters given to `create_app` in place of the ones settings choose (tests, embedding):
    contexts' lifespans use them when set."""

    payment_provider: Any = None  # a payments.provider.PaymentProvider
    mailer: Any = None  # a notifications.mail.Mailer
    saga_checkpoint: Callable[[str], None] | None = None  # booking.ports.BookingDeps.checkpoint (crash tests)
    clock: Callable[[], datetime] | None = None  # Runtime.now: the time decisions are taken at


@dataclass
class Wiring:
    """What the composition root collected from the contexts."""

    contexts: list[str] = field(default_factory=list)
    subscriptions: list[Subscription] = field(default_factory=list)
    replica_subscriptions: list[ReplicaSubscription] = field(default_factory=list)
    jobs: list[PeriodicJob] = field(default_factory=list)
    # `<context>.service.export_personal_data(runtime, user_id) -> dict`, by context: what a
    # user's GDPR export gathers from every context, beside identity's own record.
    personal_data_exports: dict[str, PersonalDataExport] = field(default_factory=dict)
    # `<context>.service.reseal_personal_data(runtime, batch_size) -> int`: re-sealing what the
    # context sealed (kernel/crypto.py) under the active master key, after a key rotation.
    personal_data_reseals: dict[str, PersonalDataReseal] = field(default_factory=dict)

    def add(self, context: str, subscriptions: Iterable[Subscription | ReplicaSubscription] = (),
            jobs: Iterable[PeriodicJob] = ()) -> None:  # fmt: skip
        """Adds a context's subscriptions and jobs, tagged with the context."""
        for subscription in subscriptions:
            tagged = dataclasses.replace(subscription, context=context)
            target = self.subscriptions if isinstance(subscription, Subscription) else self.replica_subscriptions
            target.append(tagged)
        self.jobs.extend(dataclasses.replace(job, context=context) for job in jobs)

    def bind(self, context: str, deps: Any) -> None:
        """Hands `deps` to every subscription and job of `context` (in place: the dead-letter
        replay and the worker read these same lists)."""
        for items in (self.subscriptions, self.replica_subscriptions, self.jobs):
            for n, item in enumerate(items):
                if item.context == context:
                    items[n] = dataclasses.replace(item, deps=deps)


class Runtime:
    def __init__(self, settings: Settings, wiring: Wiring | None = None, adapters: Adapters | None = None) -> None:
        self.settings = settings
        self.wiring = wiring or Wiring()
        self.adapters = adapters or Adapters()
        self.db = Database(settings)
        self.bus: Bus = create_bus(
            settings.nats_url,
            name=f"{settings.service_name}@{settings.pod}",
            namespace=settings.bus_namespace,
            batch_seconds=settings.consumer_batch_seconds,
        )
        self.redis = None
        self.cache: Cache = MemoryCache()
        self.rate_limiter: RateLimiter = MemoryRateLimiter()
        self.tokens = TokenSigner(settings)
        self.token_versions = TokenVersions(settings.identity.token_version_cache_seconds)
        self.relay = OutboxRelay(
            self.db,
            self.bus,
            batch_size=settings.outbox_batch_size,
            poll_seconds=settings.outbox_poll_seconds,
            republish_after_restore_seconds=settings.outbox_republish_after_restore_seconds,
        )
        self.consumers = ConsumerRunner(
            self.db,
            self.bus,
            max_deliver=settings.consumer_max_deliver,
            backoff_seconds=settings.consumer_backoff_seconds,
        )
        # The wiring's own list: subscriptions a context lifespan adds later are replayable too.
        self.dead_letters = DeadLetters(self.db, self.consumers, self.wiring.subscriptions)
        self.db.on_events_committed(self.relay.wake)
        # What each context's lifespan yielded, by context (filled by the composition root).
        self.context_deps: dict[str, Any] = {}
        self.ready_checks: dict[str, ReadyCheck] = {"database": lambda: ping(self.db.engine)}
        self._started = False

    def now(self) -> datetime:
        """The time the platform's decisions are taken at (a hold's deadline, whether it is still
        payable, a cancellation's refund, which holds expire): the clock given to `create_app`,
        or UTC now. Timestamps that only record when something happened read `utcnow()`."""
        return self.adapters.clock() if self.adapters.clock is not None else utcnow()

    async def start(self) -> None:
        """Connects Redis and the bus. The database connects lazily (the pool) and is checked by readiness."""
        if self.settings.redis_url:
            import redis.asyncio as redis

            self.redis = redis.from_url(
                self.settings.redis_url, socket_connect_timeout=3, socket_timeout=3, health_check_interval=30
            )
            prefix = self.settings.redis_key_prefix
            breaker = RedisBreaker()
            self.cache = FallbackCache(RedisCache(self.redis, prefix=prefix + "cache:"), breaker)
            self.rate_limiter = FallbackRateLimiter(RedisRateLimiter(self.redis, prefix=prefix + "rl:"), breaker)
            self.token_versions.use_redis(self.redis, prefix + "tokver:")
            self.ready_checks["redis"] = self.redis.ping
        await self.bus.connect(self.wiring.contexts)
        if self.settings.nats_url:
            self.ready_checks["nats"] = self.bus.ping
        self._started = True

    async def close(self) -> None:
        await self.bus.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.cache.close()
        await self.db.dispose()
        self._started = False

    def add_ready_check(self, name: str, check: ReadyCheck) -> None:
        self.ready_checks[name] = check

    async def readiness(self, timeout: float = 2.0) -> dict[str, str]:
        return {name: status for name, status, _ in await self.health(timeout)}

    async def health(self, timeout: float = 2.0) -> list[tuple[str, str, float]]:
        """Every ready check run at once: (name, "ok" or "failed: <error type>", milliseconds it took)."""

        async def run(name: str, check: ReadyCheck) -> tuple[str, str, float]:
            started = time.perf_counter()
            try:
                await asyncio.wait_for(check(), timeout=timeout)
                status = "ok"
            except Exception as error:
                log.warning(
                    "readiness check failed",
                    error_type=type(error).__name__,
                    context={"check": name, "error": str(error) or type(error).__name__},
                )
                status = f"failed: {type(error).__name__}"
            return name, status, round((time.perf_counter() - started) * 1000, 2)

        return list(await asyncio.gather(*(run(n, c) for n, c in self.ready_checks.items())))


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def context_dependency(context: str) -> Callable[[Request], Any]:
    """A FastAPI dependency giving a route its context's deps (what its lifespan yielded). A
    coroutine, so FastAPI calls it on the event loop, not in its thread pool."""

    async def dependency(request: Request) -> Any:
        try:
            return request.app.state.runtime.context_deps[context]
        except KeyError:
            raise RuntimeError(f"the {context} context is not started in this process") from None

    dependency.__name__ = f"{context}_deps"
    return dependency
