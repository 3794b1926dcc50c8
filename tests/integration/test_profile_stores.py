"""The Redis profile store (production) keeps what the memory store (the demo) keeps, for the same
batches: the per-key scripts add up increments, keep the newest times, trim to each key's cap and
skip a batch they have seen."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

import pytest
import redis.asyncio as redis

from staybook.kernel.settings import PersonalizationSettings
from staybook.personalization.profiles import Decay, fold
from staybook.personalization.properties import PropertyFact, PropertyFacts
from staybook.personalization.repository import MemoryProfileStore, RedisProfileStore
from staybook.personalization.signals import SignalBatch, SignalRecord, epoch_ms


def _stay(n: int, city: str) -> PropertyFact:
    return PropertyFact(
        property_id=uuid.uuid4(),
        name=f"Stay {n}",
        city=city,
        country="PT",
        latitude=38.7,
        longitude=-9.1,
        rating_tenths=40 + n % 10,
        amenities=("wifi", "kitchen") if n % 2 else ("wifi",),
        property_type="apartment" if n % 3 else "hotel",
        description="",
        active=True,
    )


async def test_redis_and_memory_stores_agree(redis_url, redis_key_prefix):
    settings = PersonalizationSettings(profile_cap=10, recent_views=5, covisit_cap=6)
    stays = [_stay(n, "Lisbon" if n % 4 else "Porto") for n in range(24)]
    facts, decay = PropertyFacts(stays), Decay.of(settings)
    now = epoch_ms(datetime.now(UTC))
    users = [uuid.uuid4() for _ in range(3)]
    batches = []
    # Views of overlapping stays by three users, out of order; every time distinct (ties would
    # leave the order of recently viewed to each store's own tie-break).
    ages = random.Random(7).sample(range(72), 72)
    for n in range(12):
        user = users[n % 3]
        signals = [
            SignalRecord("view", now - 1000 * ages[n * 6 + i], stays[(n * 5 + i) % 24].property_id, price=8000 + 50 * i)
            for i in range(6)
        ]
        signals.append(
            SignalRecord("search", now - n, city="Lisbon", guests=2 + n % 2, price=9000 + 100 * n, currency="EUR")
        )
        batches.append(SignalBatch(uuid.uuid4(), now, user, None, signals))

    def folding(fresh, recent):
        return fold(fresh, facts, decay, recent)

    client = redis.Redis.from_url(redis_url)
    stores = [MemoryProfileStore(settings), RedisProfileStore(client, redis_key_prefix + "pz:", settings)]
    try:
        for store in stores:
            assert await store.apply(batches[:6], folding) == 6
            assert await store.apply(batches[4:], folding) == 6  # two seen already
            assert await store.apply(batches, folding) == 0
        memory, production = stores
        for user in users:
            subject = f"u:{user.hex}"
            kept, written = await memory.profile(subject), await production.profile(subject)
            assert written.recently_viewed == kept.recently_viewed and len(written.recently_viewed) == 5
            assert [i for i, _ in written.items] == [i for i, _ in kept.items] and len(written.items) == 10
            for name in ("cities", "guests", "amenities", "property_types"):
                assert _rounded(getattr(written, name)) == _rounded(getattr(kept, name)), name
            assert kept.price_band is not None and written.price_band == pytest.approx(kept.price_band)
        for stay in stays[:6]:
            item = stay.property_id.hex
            assert _rounded(await production.covisited(item, 10)) == _rounded(await memory.covisited(item, 10))
        assert _rounded(await production.popular("lisbon", 50)) == _rounded(await memory.popular("lisbon", 50))
    finally:
        await client.aclose()


def _rounded(scored) -> list[tuple[str, float]]:
    return sorted((member, round(score, 6)) for member, score in scored)
