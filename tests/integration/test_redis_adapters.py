"""Rate limits and the cache on a real Redis: atomic under concurrency, shared between processes."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as redis

from staybook.kernel.cache import RedisCache
from staybook.kernel.ratelimit import RateLimitRule, RedisRateLimiter


@pytest.fixture
async def redis_clients(redis_url):
    clients = [redis.from_url(redis_url) for _ in range(2)]
    yield clients
    for client in clients:
        await client.aclose()


async def test_concurrent_hits_never_exceed_the_limit(redis_clients, redis_key_prefix):
    # Two limiters on two connections stand for two API processes sharing Redis.
    limiters = [RedisRateLimiter(c, prefix=redis_key_prefix + "rl:") for c in redis_clients]
    rule = RateLimitRule("login", limit=25, window_seconds=60)
    decisions = await asyncio.gather(*(limiters[i % 2].hit(rule, "10.0.0.1") for i in range(200)))
    assert sum(d.allowed for d in decisions) == 25
    refused = [d for d in decisions if not d.allowed]
    assert all(0 < d.retry_after_seconds <= 60 for d in refused)


async def test_block_applies_across_processes(redis_clients, redis_key_prefix):
    first, second = (RedisRateLimiter(c, prefix=redis_key_prefix + "rl:") for c in redis_clients)
    rule = RateLimitRule("ip", limit=3, window_seconds=300, block_seconds=600)
    for _ in range(3):
        assert (await first.hit(rule, "10.0.0.2")).allowed
    assert not (await first.hit(rule, "10.0.0.2")).allowed
    blocked = await second.hit(rule, "10.0.0.2")
    assert not blocked.allowed and 590 <= blocked.retry_after_seconds <= 600
    await second.reset(rule, "10.0.0.2")
    assert (await first.hit(rule, "10.0.0.2")).allowed


async def test_cache_loads_once_across_processes(redis_clients, redis_key_prefix):
    caches = [RedisCache(c, prefix=redis_key_prefix + "cache:") for c in redis_clients]
    calls = 0

    async def loader():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)
        return {"nights": 3}

    results = await asyncio.gather(*(caches[i % 2].get_or_load("quote:rt1", 30, loader) for i in range(40)))
    assert calls == 1
    assert all(r == {"nights": 3} for r in results)
    await caches[0].delete("quote:rt1")
    assert await caches[1].get("quote:rt1") is None


async def test_cache_ttl_and_namespaces(redis_clients, redis_key_prefix):
    cache = RedisCache(redis_clients[0], prefix=redis_key_prefix + "cache:")
    await cache.set("short", [1], ttl_seconds=0.05)
    await asyncio.sleep(0.1)
    assert await cache.get("short") is None
    assert await cache.namespace_version("availability") == 0
    assert await cache.bump_namespace("availability") == 1


@pytest.mark.parametrize("adapter", ["redis", "memory"])
async def test_versioned_bytes_load_once_and_go_stale_on_a_bump(adapter, redis_clients, redis_key_prefix):
    from staybook.kernel.cache import MemoryCache

    if adapter == "redis":
        caches = [RedisCache(c, prefix=redis_key_prefix + "cache:") for c in redis_clients]
    else:
        caches = [MemoryCache()] * 2
    loads = []

    async def loader() -> bytes:
        loads.append(1)
        await asyncio.sleep(0.05)
        return b'{"answer": %d}' % len(loads)

    first = await asyncio.gather(
        *(caches[i % 2].get_or_load_versioned("availability:p1", "stay", 30, loader) for i in range(20))
    )
    assert first == [b'{"answer": 1}'] * 20 and len(loads) == 1
    assert await caches[1].get_or_load_versioned("availability:p1", "stay", 30, loader) == b'{"answer": 1}'
    # Another property's namespace is its own.
    assert await caches[0].get_or_load_versioned("availability:p2", "stay", 30, loader) == b'{"answer": 2}'
    await caches[0].bump_namespace("availability:p1")
    assert await caches[1].get_or_load_versioned("availability:p1", "stay", 30, loader) == b'{"answer": 3}'
    assert await caches[0].get_or_load_versioned("availability:p1", "stay", 30, loader) == b'{"answer": 3}'
    assert len(loads) == 3
