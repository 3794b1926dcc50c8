"""Cache protocol with two adapters (in-memory, Redis): TTL, JSON values, stampede protection.

`get_or_load` is single-flight: concurrent misses of one key run the loader
once per process, and with Redis a short lock key makes other processes wait
for the first loader's value instead of all hitting the database.
Invalidation is explicit: delete keys, or bump a namespace version so every
key built with `versioned_key` goes stale at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson

from staybook.kernel import metrics

Loader = Callable[[], Awaitable[Any]]
BytesLoader = Callable[[], Awaitable[bytes]]


class Cache(Protocol):
    kind: str

    async def get(self, key: str) -> Any | None: ...

    async def set(self, key: str, value: Any, ttl_seconds: float) -> None: ...

    async def delete(self, *keys: str) -> None: ...

    async def get_or_load(self, key: str, ttl_seconds: float, loader: Loader, namespace: str = "default") -> Any: ...

    async def get_or_load_versioned(
        self, namespace: str, key: str, ttl_seconds: float, loader: BytesLoader, metric: str = "default"
    ) -> bytes:
        """Pre-serialised bytes under `namespace`'s current version (see `versioned_key`): the
        version and the value are read in one round trip, and the bytes go out as they are."""
        ...

    async def namespace_version(self, namespace: str) -> int: ...

    async def bump_namespace(self, namespace: str) -> int: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


_MISSING = object()


class _SingleFlight:
    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Future] = {}

    async def run(self, key: str, load: Loader) -> Any:
        existing = self._inflight.get(key)
        if existing is not None:
            return await asyncio.shield(existing)
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await load()
            future.set_result(value)
            return value
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark retrieved so a lonely failure is not logged as unhandled
            raise
        finally:
            self._inflight.pop(key, None)


class MemoryCache:
    """Bounded LRU with per-entry expiry; values stored as JSON bytes so both adapters behave alike."""

    kind = "memory"

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._flight = _SingleFlight()
        self._versions: dict[str, int] = {}

    async def get(self, key: str) -> Any | None:
        value = self._get(key)
        return None if value is _MISSING else value

    def _get(self, key: str) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return _MISSING
        expires_at, raw = entry
        if expires_at < time.monotonic():
            self._entries.pop(key, None)
            return _MISSING
        self._entries.move_to_end(key)
        return orjson.loads(raw)

    async def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        self._store(key, orjson.dumps(value), ttl_seconds)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._entries.pop(key, None)

    async def get_or_load(self, key: str, ttl_seconds: float, loader: Loader, namespace: str = "default") -> Any:
        value = self._get(key)
        if value is not _MISSING:
            metrics.CACHE_REQUESTS.labels(namespace, "hit").inc()
            return value
        metrics.CACHE_REQUESTS.labels(namespace, "miss").inc()

        async def load_and_store() -> Any:
            loaded = await loader()
            await self.set(key, loaded, ttl_seconds)
            return loaded

        return await self._flight.run(key, load_and_store)

    async def get_or_load_versioned(
        self, namespace: str, key: str, ttl_seconds: float, loader: BytesLoader, metric: str = "default"
    ) -> bytes:
        full_key = _versioned(namespace, self._versions.get(namespace, 0), key)
        entry = self._entries.get(full_key)
        if entry is not None and entry[0] >= time.monotonic():
            self._entries.move_to_end(full_key)
            metrics.CACHE_REQUESTS.labels(metric, "hit").inc()
            return entry[1]
        metrics.CACHE_REQUESTS.labels(metric, "miss").inc()

        async def load_and_store() -> bytes:
            loaded = await loader()
            self._store(full_key, loaded, ttl_seconds)
            return loaded

        return await self._flight.run(full_key, load_and_store)

    def _store(self, key: str, raw: bytes, ttl_seconds: float) -> None:
        self._entries[key] = (time.monotonic() + ttl_seconds, raw)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def namespace_version(self, namespace: str) -> int:
        return self._versions.get(namespace, 0)

    async def bump_namespace(self, namespace: str) -> int:
        self._versions[namespace] = self._versions.get(namespace, 0) + 1
        return self._versions[namespace]

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()


# The namespace version and the value under it in one round trip (a hit is one EVALSHA, not two GETs).
# The value's key is built inside the script, which a single Redis (or a primary with replicas)
# allows; Redis Cluster would need both keys under one hash tag.
_GET_VERSIONED = """
local version = redis.call('GET', KEYS[1]) or '0'
return {version, redis.call('GET', ARGV[1] .. version .. ARGV[2])}
"""


class RedisCache:
    kind = "redis"

    def __init__(self, client, *, prefix: str = "staybook:cache:", lock_seconds: float = 5.0) -> None:
        self.client = client
        self.prefix = prefix
        self.lock_seconds = lock_seconds
        self._flight = _SingleFlight()
        self._get_versioned = client.register_script(_GET_VERSIONED)

    def _key(self, key: str) -> str:
        return self.prefix + key

    async def get(self, key: str) -> Any | None:
        raw = await self.client.get(self._key(key))
        return None if raw is None else orjson.loads(raw)

    async def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        await self.client.set(self._key(key), orjson.dumps(value), px=max(1, int(ttl_seconds * 1000)))

    async def delete(self, *keys: str) -> None:
        if keys:
            await self.client.delete(*(self._key(k) for k in keys))

    async def get_or_load(self, key: str, ttl_seconds: float, loader: Loader, namespace: str = "default") -> Any:
        raw = await self.client.get(self._key(key))
        if raw is not None:
            metrics.CACHE_REQUESTS.labels(namespace, "hit").inc()
            return orjson.loads(raw)
        metrics.CACHE_REQUESTS.labels(namespace, "miss").inc()
        return await self._flight.run(key, lambda: self._load_with_lock(key, ttl_seconds, loader))

    async def _load_with_lock(self, key: str, ttl_seconds: float, loader: Loader) -> Any:
        # A value this process loads itself is returned as the loader made it (no round trip through JSON).
        loaded: list[Any] = []

        async def remember() -> bytes:
            value = await loader()
            loaded.append(value)
            return orjson.dumps(value)

        raw = await self._load_raw_with_lock(key, ttl_seconds, remember)
        return loaded[0] if loaded else orjson.loads(raw)

    async def _load_raw_with_lock(self, key: str, ttl_seconds: float, loader: BytesLoader) -> bytes:
        lock_key = self._key(key) + ":lock"
        got_lock = await self.client.set(lock_key, b"1", nx=True, px=int(self.lock_seconds * 1000))
        if not got_lock:
            # Another process is loading: wait for its value rather than stampeding the source.
            deadline = time.monotonic() + self.lock_seconds
            while time.monotonic() < deadline:
                await asyncio.sleep(0.01)
                raw = await self.client.get(self._key(key))
                if raw is not None:
                    return raw
        try:
            raw = await loader()
        except BaseException:
            if got_lock:
                await self.client.delete(lock_key)
            raise
        # The value and the lock's release in one round trip (a miss is already four of them).
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self._key(key), raw, px=max(1, int(ttl_seconds * 1000)))
        if got_lock:
            pipe.delete(lock_key)
        await pipe.execute()
        return raw

    async def get_or_load_versioned(
        self, namespace: str, key: str, ttl_seconds: float, loader: BytesLoader, metric: str = "default"
    ) -> bytes:
        version, raw = await self._get_versioned(
            # The script joins these around the version it reads: the layout of `_versioned`.
            keys=[self.prefix + "ns:" + namespace],
            args=[f"{self.prefix}{namespace}:v", f":{key}"],
        )
        if raw is not None:
            metrics.CACHE_REQUESTS.labels(metric, "hit").inc()
            return raw
        metrics.CACHE_REQUESTS.labels(metric, "miss").inc()
        full_key = _versioned(namespace, int(version), key)
        return await self._flight.run(full_key, lambda: self._load_raw_with_lock(full_key, ttl_seconds, loader))

    async def namespace_version(self, namespace: str) -> int:
        raw = await self.client.get(self.prefix + "ns:" + namespace)
        return int(raw or 0)

    async def bump_namespace(self, namespace: str) -> int:
        return int(await self.client.incr(self.prefix + "ns:" + namespace))

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        return None


def _versioned(namespace: str, version: int | str, key: str) -> str:
    return f"{namespace}:v{version}:{key}"


async def versioned_key(cache: Cache, namespace: str, key: str) -> str:
    return _versioned(namespace, await cache.namespace_version(namespace), key)
