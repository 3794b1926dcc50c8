import asyncio

import pytest

from staybook.kernel.cache import MemoryCache, versioned_key


async def test_values_expire_after_their_ttl():
    cache = MemoryCache()
    await cache.set("k", {"a": 1}, ttl_seconds=0.05)
    assert await cache.get("k") == {"a": 1}
    await asyncio.sleep(0.08)
    assert await cache.get("k") is None


async def test_concurrent_misses_load_once():
    cache = MemoryCache()
    calls = 0

    async def loader():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        return [1, 2, 3]

    results = await asyncio.gather(*(cache.get_or_load("hot", 10, loader) for _ in range(50)))
    assert calls == 1
    assert all(r == [1, 2, 3] for r in results)
    assert await cache.get_or_load("hot", 10, loader) == [1, 2, 3]
    assert calls == 1


async def test_a_failing_loader_is_not_cached():
    cache = MemoryCache()

    async def broken():
        raise ValueError("source down")

    with pytest.raises(ValueError):
        await cache.get_or_load("k", 10, broken)

    async def fixed():
        return 42

    assert await cache.get_or_load("k", 10, fixed) == 42


async def test_bounded_size_evicts_least_recently_used():
    cache = MemoryCache(max_entries=3)
    for key in "abc":
        await cache.set(key, key, 60)
    await cache.get("a")
    await cache.set("d", "d", 60)
    assert await cache.get("b") is None
    assert await cache.get("a") == "a"


async def test_namespace_bump_invalidates_every_versioned_key():
    cache = MemoryCache()
    key = await versioned_key(cache, "availability", "rt1:2030-01-01")
    await cache.set(key, "old", 60)
    await cache.bump_namespace("availability")
    assert await cache.get(await versioned_key(cache, "availability", "rt1:2030-01-01")) is None
