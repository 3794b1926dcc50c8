"""Where the real-time layer keeps its state: Redis in production, memory in the demo.

Both stores apply a group of stream messages as one step together with their
inbox entries (message = signal batch, id = batch id), so a redelivered batch
changes nothing: Redis watches the inbox keys, reads which batches are new,
then writes the deltas and the inbox keys in one MULTI/EXEC (a concurrent
writer of the same batch aborts it, and it is retried). The inbox lives with
the state it protects; a database inbox could not be committed together with
Redis writes.

Memory is bounded: every subject key expires `profile_ttl_days` after its last
signal, and each sorted set keeps its top `profile_cap` members (recently viewed:
`recent_views`, co-visitation: `covisit_cap`, popularity: 5,000).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from staybook.kernel.settings import PersonalizationSettings
from staybook.personalization.profiles import (
    PROFILE_FIELDS,
    Decay,
    Deltas,
    Profile,
    normalised,
    subject_tag,
)
from staybook.personalization.signals import SignalBatch

POPULARITY_CAP = 5000
POPULAR_CACHE_SECONDS = 1.0
POPULAR_CACHE_ENTRIES = 10_000
Fold = Callable[[Sequence[SignalBatch], Mapping[str, list[str]]], Deltas]


class ProfileStore(Protocol):
    kind: str

    async def apply(self, batches: Sequence[SignalBatch], fold: Fold) -> int:
        """Folds the batches not applied before into the state, with their inbox entries, in one
        step; returns how many were new."""

    async def profile(self, subject: str) -> Profile: ...

    async def popular(self, city: str | None, limit: int) -> list[tuple[str, float]]: ...

    async def popular_cities(self, limit: int) -> list[tuple[str, float]]: ...

    async def covisited(self, item: str, limit: int) -> list[tuple[str, float]]: ...

    async def covisited_sum(self, items: Sequence[str], limit: int) -> dict[str, float]:
        """The stays viewed with any of `items`, each one's co-visitation scores summed."""

    async def erase(self, subject: str) -> None: ...

    async def close(self) -> None: ...


def summed(scored: Sequence[Sequence[tuple[str, float]]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for pairs in scored:
        for item, score in pairs:
            total[item] = total.get(item, 0.0) + score
    return total


def _unique(batches: Sequence[SignalBatch]) -> list[SignalBatch]:
    return list({batch.batch_id: batch for batch in batches}.values())


class _Limits:
    def __init__(self, settings: PersonalizationSettings) -> None:
        self.decay = Decay.of(settings)
        self.ttl_seconds = settings.profile_ttl_days * 86_400
        self.inbox_ttl_seconds = (settings.stream_max_age_days + 1) * 86_400
        self.profile_cap = settings.profile_cap
        self.recent_views = settings.recent_views
        self.covisit_cap = settings.covisit_cap

    def cap_of(self, key: str) -> int:
        if key.endswith(":recent"):
            return self.recent_views
        if key.endswith(":searches"):
            return 10
        if key.startswith("cov:"):
            return self.covisit_cap
        if key.startswith("pop"):
            return POPULARITY_CAP
        return self.profile_cap

    def expires(self, key: str) -> bool:
        return key.startswith(("{", "cov:"))

    def now_divisors(self) -> tuple[float, float]:
        now_ms = int(time.time() * 1000)
        return self.decay.profile(now_ms), self.decay.trending(now_ms)


# ---------------------------------------------------------------------------- memory (the demo)


class MemoryProfileStore(_Limits):
    kind = "memory"

    def __init__(self, settings: PersonalizationSettings) -> None:
        super().__init__(settings)
        self._zsets: dict[str, dict[str, float]] = {}
        self._hashes: dict[str, dict[str, float]] = {}
        self._expires: dict[str, float] = {}
        self._inbox: dict[str, float] = {}
        self._applied = 0

    async def apply(self, batches: Sequence[SignalBatch], fold: Fold) -> int:
        now = time.time()
        fresh = [b for b in _unique(batches) if self._inbox.get(b.batch_id.hex, 0) < now]
        if not fresh:
            return 0
        recent = {s: self._top(f"{subject_tag(s)}:recent", self.recent_views) for s in _subjects(fresh)}
        deltas = fold(fresh, recent)
        for key, members in deltas.zincr.items():
            zset = self._zset(key, now)
            for member, value in members.items():
                zset[member] = zset.get(member, 0.0) + value
        for key, members in deltas.zlatest.items():
            zset = self._zset(key, now)
            for member, at in members.items():
                if at > zset.get(member, -1):
                    zset[member] = at
        for key, fields in deltas.hincr.items():
            values = self._hashes.setdefault(key, {})
            for name, value in fields.items():
                values[name] = values.get(name, 0.0) + value
            self._expires[key] = now + self.ttl_seconds
        for key in {*deltas.zincr, *deltas.zlatest}:
            self._trim(key)
        for batch in fresh:
            self._inbox[batch.batch_id.hex] = now + self.inbox_ttl_seconds
        self._applied += 1
        if self._applied % 100 == 0:
            self._sweep(now)
        return len(fresh)

    def _zset(self, key: str, now: float) -> dict[str, float]:
        if self.expires(key):
            self._expires[key] = now + self.ttl_seconds
        return self._zsets.setdefault(key, {})

    def _trim(self, key: str) -> None:
        zset = self._zsets[key]
        cap = self.cap_of(key)
        if len(zset) > cap:
            self._zsets[key] = dict(sorted(zset.items(), key=lambda kv: kv[1], reverse=True)[:cap])

    def _sweep(self, now: float) -> None:
        for key in [k for k, at in self._expires.items() if at < now]:
            self._zsets.pop(key, None)
            self._hashes.pop(key, None)
            del self._expires[key]
        for key in [k for k, at in self._inbox.items() if at < now]:
            del self._inbox[key]

    def _top(self, key: str, limit: int) -> list[str]:
        return [member for member, _ in self._top_scored(key, limit)]

    def _top_scored(self, key: str, limit: int) -> list[tuple[str, float]]:
        if self._expires.get(key, float("inf")) < time.time():
            return []
        zset = self._zsets.get(key, {})
        return sorted(zset.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]

    async def profile(self, subject: str) -> Profile:
        tag = subject_tag(subject)
        profile_now, _ = self.now_divisors()
        prices = self._hashes.get(f"{tag}:price", {})
        raw = {name: self._top_scored(f"{tag}:{name}", self.profile_cap) for name in PROFILE_FIELDS}
        return _profile(
            subject,
            raw,
            self._top(f"{tag}:recent", self.recent_views),
            self._top(f"{tag}:searches", 10),
            prices.get("w"),
            prices.get("sum"),
            profile_now,
        )

    async def popular(self, city: str | None, limit: int) -> list[tuple[str, float]]:
        _, trending_now = self.now_divisors()
        return normalised(self._top_scored(f"pop:{city or '*'}", limit), trending_now)

    async def popular_cities(self, limit: int) -> list[tuple[str, float]]:
        _, trending_now = self.now_divisors()
        return normalised(self._top_scored("popcity", limit), trending_now)

    async def covisited(self, item: str, limit: int) -> list[tuple[str, float]]:
        profile_now, _ = self.now_divisors()
        return normalised(self._top_scored(f"cov:{item}", limit), profile_now)

    async def covisited_sum(self, items: Sequence[str], limit: int) -> dict[str, float]:
        return summed([await self.covisited(item, limit) for item in items])

    async def erase(self, subject: str) -> None:
        tag = subject_tag(subject)
        for key in [k for k in [*self._zsets, *self._hashes] if k.startswith(tag + ":")]:
            self._zsets.pop(key, None)
            self._hashes.pop(key, None)
            self._expires.pop(key, None)

    async def close(self) -> None:
        return None


def _subjects(batches: Sequence[SignalBatch]) -> list[str]:
    return sorted({b.subject for b in batches if b.subject is not None})


def _profile(subject, raw, recent, searches, price_w, price_sum, divisor) -> Profile:
    return Profile(
        subject=subject,
        cities=normalised(raw["city"], divisor),
        guests=normalised(raw["guests"], divisor),
        amenities=normalised(raw["amen"], divisor),
        property_types=normalised(raw["ptype"], divisor),
        items=normalised(raw["items"], divisor),
        recently_viewed=recent,
        searches=searches,
        price_band=(price_sum / price_w) if price_w else None,
    )


# ---------------------------------------------------------------------------- Redis (production)


# KEYS[1] a sorted set; ARGV: cap, ttl (0: keep), the number of increments n, then n (increment,
# member) pairs, then (time, member) pairs kept only where newer (ZADD GT); the set is trimmed to
# its top `cap` members.
_UPDATE_SORTED_SET = """
local key, cap, ttl, increments = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local last_increment = 3 + 2 * increments
for i = 4, last_increment, 2 do redis.call('ZINCRBY', key, ARGV[i], ARGV[i + 1]) end
for i = last_increment + 1, #ARGV, 2 do redis.call('ZADD', key, 'GT', ARGV[i], ARGV[i + 1]) end
redis.call('ZREMRANGEBYRANK', key, 0, -(cap + 1))
if ttl > 0 then redis.call('EXPIRE', key, ttl) end
return 1
"""
# KEYS[1] a hash; ARGV: ttl, then (increment, field) pairs.
_UPDATE_HASH = """
for i = 2, #ARGV, 2 do redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i + 1], ARGV[i]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""


class RedisProfileStore(_Limits):
    kind = "redis"

    def __init__(self, redis, prefix: str, settings: PersonalizationSettings) -> None:
        super().__init__(settings)
        self.redis = redis
        self.prefix = prefix
        self._popular: dict[tuple[str | None, int], tuple[float, list[tuple[str, float]]]] = {}
        self._update_sorted_set = redis.register_script(_UPDATE_SORTED_SET)
        self._update_hash = redis.register_script(_UPDATE_HASH)

    def _key(self, key: str) -> str:
        return self.prefix + key

    async def apply(self, batches: Sequence[SignalBatch], fold: Fold) -> int:
        from redis.exceptions import WatchError

        batches = _unique(batches)
        if not batches:
            return 0  # WATCH of no keys is an error in Redis
        inbox = [self._key(f"inbox:{b.batch_id.hex}") for b in batches]
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(*inbox)
                    seen = await pipe.mget(inbox)
                    fresh = [(b, k) for b, k, s in zip(batches, inbox, seen, strict=True) if s is None]
                    if not fresh:
                        await pipe.reset()
                        return 0
                    fresh_batches = [b for b, _ in fresh]
                    deltas = fold(fresh_batches, await self._recent(_subjects(fresh_batches)))
                    pipe.multi()
                    await self._write(pipe, deltas)
                    for _, key in fresh:
                        pipe.set(key, b"1", ex=self.inbox_ttl_seconds)
                    await pipe.execute()
                    return len(fresh)
                except WatchError:
                    continue

    async def _write(self, pipe, deltas: Deltas) -> None:
        """One script call per key (its increments, newest times, trim and expiry), not one
        command per member: redis-py's cost per command, not Redis's, bounded the aggregator."""
        for key in {*deltas.zincr, *deltas.zlatest}:
            increments = deltas.zincr.get(key, {})
            latest = deltas.zlatest.get(key, {})
            arguments: list = [self.cap_of(key), self.ttl_seconds if self.expires(key) else 0, len(increments)]
            for member, value in increments.items():
                arguments += (value, member)
            for member, at_ms in latest.items():
                arguments += (at_ms, member)
            await self._update_sorted_set(keys=[self._key(key)], args=arguments, client=pipe)
        for key, fields in deltas.hincr.items():
            arguments = [self.ttl_seconds]
            for field_name, value in fields.items():
                arguments += (value, field_name)
            await self._update_hash(keys=[self._key(key)], args=arguments, client=pipe)

    async def _recent(self, subjects: list[str]) -> dict[str, list[str]]:
        if not subjects:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for subject in subjects:
                pipe.zrevrange(self._key(f"{subject_tag(subject)}:recent"), 0, self.recent_views - 1)
            answers = await pipe.execute()
        return {s: [m.decode() for m in members] for s, members in zip(subjects, answers, strict=True)}

    async def profile(self, subject: str) -> Profile:
        tag = subject_tag(subject)
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in PROFILE_FIELDS:
                pipe.zrevrange(self._key(f"{tag}:{name}"), 0, self.profile_cap - 1, withscores=True)
            pipe.zrevrange(self._key(f"{tag}:recent"), 0, self.recent_views - 1)
            pipe.zrevrange(self._key(f"{tag}:searches"), 0, 9)
            pipe.hmget(self._key(f"{tag}:price"), "w", "sum")
            answers = await pipe.execute()
        raw = {
            name: [(m.decode(), s) for m, s in answer] for name, answer in zip(PROFILE_FIELDS, answers, strict=False)
        }
        recent, searches, (price_w, price_sum) = answers[len(PROFILE_FIELDS) :]
        profile_now, _ = self.now_divisors()
        return _profile(
            subject,
            raw,
            [m.decode() for m in recent],
            [m.decode() for m in searches],
            float(price_w) if price_w else None,
            float(price_sum) if price_sum else None,
            profile_now,
        )

    async def _top(self, key: str, limit: int, divisor: float) -> list[tuple[str, float]]:
        answer = await self.redis.zrevrange(self._key(key), 0, limit - 1, withscores=True)
        return normalised(((m.decode(), s) for m, s in answer), divisor)

    async def popular(self, city: str | None, limit: int) -> list[tuple[str, float]]:
        # Every recommendation reads up to 500 popular stays of its place; popularity moves over hours,
        # so each process keeps the answer for a second instead of reading it from Redis per request.
        key = (city, limit)
        cached = self._popular.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < POPULAR_CACHE_SECONDS:
            return cached[1]
        answer = await self._top(f"pop:{city or '*'}", limit, self.now_divisors()[1])
        if len(self._popular) >= POPULAR_CACHE_ENTRIES:
            self._popular.clear()
        self._popular[key] = (now, answer)
        return answer

    async def popular_cities(self, limit: int) -> list[tuple[str, float]]:
        return await self._top("popcity", limit, self.now_divisors()[1])

    async def covisited(self, item: str, limit: int) -> list[tuple[str, float]]:
        return await self._top(f"cov:{item}", limit, self.now_divisors()[0])

    async def covisited_sum(self, items: Sequence[str], limit: int) -> dict[str, float]:
        if not items:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for item in items:
                pipe.zrevrange(self._key(f"cov:{item}"), 0, limit - 1, withscores=True)
            answers = await pipe.execute()
        divisor = self.now_divisors()[0]
        return summed([normalised(((m.decode(), s) for m, s in answer), divisor) for answer in answers])

    async def erase(self, subject: str) -> None:
        tag = subject_tag(subject)
        names = [*PROFILE_FIELDS, "recent", "searches", "price"]
        await self.redis.delete(*(self._key(f"{tag}:{name}") for name in names))

    async def close(self) -> None:
        return None
