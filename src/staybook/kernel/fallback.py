"""What a process does while Redis is unreachable: the cache falls through to the source, and rate
limits fail open for reads and closed (in-process windows) for credential routes.

Without this, the 31 s Redis was stopped answered availability, logins and payment webhooks with
500s. A breaker skips Redis for a moment after an error, so each request does not wait out a dead
connection's timeout; the first call after that moment tries Redis again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from redis.exceptions import RedisError

from staybook.kernel import metrics
from staybook.kernel.cache import BytesLoader, Cache, Loader
from staybook.kernel.ratelimit import Decision, MemoryRateLimiter, RateLimiter, RateLimitRule

log = structlog.get_logger("staybook.fallback")

UNAVAILABLE = (RedisError, OSError, asyncio.TimeoutError)


class RedisBreaker:
    def __init__(self, open_seconds: float = 1.0, clock=time.monotonic) -> None:
        self.open_seconds = open_seconds
        self.clock = clock
        self._open_until = 0.0

    @property
    def closed(self) -> bool:
        return self.clock() >= self._open_until

    def failed(self, part: str, error: BaseException) -> None:
        if self.closed:  # one line per opening, not one per request
            log.warning("redis unavailable; falling back", error_type=type(error).__name__, context={"part": part})
        metrics.REDIS_FALLBACKS.labels(part).inc()
        self._open_until = self.clock() + self.open_seconds


class FallbackCache:
    """A Redis cache that answers from the source while Redis is down (nothing is cached meanwhile)."""

    def __init__(self, primary: Cache, breaker: RedisBreaker) -> None:
        self.primary = primary
        self.breaker = breaker
        self.kind = primary.kind
        # Invalidations that could not be written: retried once Redis answers again, so values
        # cached before the outage are not served under the old version afterwards.
        self._pending_bumps: set[str] = set()

    async def _settle_bumps(self) -> None:
        for namespace in list(self._pending_bumps):
            await self.primary.bump_namespace(namespace)
            self._pending_bumps.discard(namespace)

    async def _try(self, call, fallback):
        if not self.breaker.closed:
            return await fallback()
        try:
            if self._pending_bumps:
                await self._settle_bumps()
            return await call()
        except UNAVAILABLE as error:
            self.breaker.failed("cache", error)
            return await fallback()

    async def get(self, key: str) -> Any | None:
        return await self._try(lambda: self.primary.get(key), _none)

    async def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        await self._try(lambda: self.primary.set(key, value, ttl_seconds), _none)

    async def delete(self, *keys: str) -> None:
        await self._try(lambda: self.primary.delete(*keys), _none)

    async def get_or_load(self, key: str, ttl_seconds: float, loader: Loader, namespace: str = "default") -> Any:
        return await self._try(lambda: self.primary.get_or_load(key, ttl_seconds, loader, namespace), loader)

    async def get_or_load_versioned(
        self, namespace: str, key: str, ttl_seconds: float, loader: BytesLoader, metric: str = "default"
    ) -> bytes:
        return await self._try(
            lambda: self.primary.get_or_load_versioned(namespace, key, ttl_seconds, loader, metric), loader
        )

    async def namespace_version(self, namespace: str) -> int:
        return await self._try(lambda: self.primary.namespace_version(namespace), _zero)

    async def bump_namespace(self, namespace: str) -> int:
        async def remember() -> int:
            self._pending_bumps.add(namespace)
            return 0

        return await self._try(lambda: self.primary.bump_namespace(namespace), remember)

    async def ping(self) -> None:
        await self.primary.ping()  # readiness reports Redis as it is

    async def close(self) -> None:
        await self.primary.close()


class FallbackRateLimiter:
    """Rules marked `fail_closed` (credential routes) count in this process while Redis is down;
    the others allow the request."""

    def __init__(self, primary: RateLimiter, breaker: RedisBreaker) -> None:
        self.primary = primary
        self.breaker = breaker
        self.kind = primary.kind
        self.local = MemoryRateLimiter()

    async def hit(self, rule: RateLimitRule, client: str, cost: int = 1) -> Decision:
        if self.breaker.closed:
            try:
                return await self.primary.hit(rule, client, cost)
            except UNAVAILABLE as error:
                self.breaker.failed("rate_limiter", error)
        if rule.fail_closed:
            return await self.local.hit(rule, client, cost)
        return Decision(True, rule.limit, 0)

    async def reset(self, rule: RateLimitRule, client: str) -> None:
        await self.local.reset(rule, client)
        if self.breaker.closed:
            try:
                await self.primary.reset(rule, client)
            except UNAVAILABLE as error:
                self.breaker.failed("rate_limiter", error)


async def _none() -> None:
    return None


async def _zero() -> int:
    return 0
