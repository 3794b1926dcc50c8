"""Offline evaluation: synthetic users with planted tastes, sessions split by time, NDCG@10.

The generator plants what each user likes (one or two home cities, a nightly price level,
three amenities, a property type) and lets users search, view, click, linger, wishlist and
book through sessions over 60 days, choosing stays by their hidden utility among what a
search in that city shows. Everything before the split time trains; the bookings after it
are what each method must find, among the whole catalogue:

- random; popularity (trending over the training signals); the real-time profile alone
  (the aggregator's fold of the training signals); the model alone (ALS on them); the blend
  (what the API serves).

Metrics per method: NDCG@10 and recall@10 over users with a held-out booking, and catalogue
coverage (distinct stays recommended / catalogue).
"""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np

from staybook.kernel.settings import PersonalizationSettings
from staybook.personalization import model as models
from staybook.personalization.model import ContentIndex, TrainedModel
from staybook.personalization.profiles import Decay, fold
from staybook.personalization.properties import PropertyFact, PropertyFacts
from staybook.personalization.ranking import Candidates, blend, popularity_scores, profile_scores
from staybook.personalization.repository import MemoryProfileStore
from staybook.personalization.signals import SignalBatch, SignalRecord

AMENITIES = ("wifi", "pool", "parking", "breakfast", "gym", "spa", "kitchen", "pets", "sea_view", "air_conditioning")
TYPES = ("hotel", "apartment", "hostel", "villa", "guesthouse")
METHODS = ("random", "popularity", "profile", "model", "blend")
BASE = datetime(2026, 10, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Taste:
    cities: tuple[str, ...]
    price_level: float  # log nightly price
    amenities: tuple[str, ...]
    property_type: str


@dataclass
class World:
    facts: list[PropertyFact]
    prices: dict[str, float]  # property hex -> nightly price
    tastes: dict[uuid.UUID, Taste]
    train: list[SignalBatch]
    held_out: dict[uuid.UUID, set[str]]  # user -> properties booked after the split


def _utility(taste: Taste, fact: PropertyFact, price: float, rng: random.Random) -> float:
    score = 3.0 if fact.city in taste.cities else 0.0
    score += 0.8 * len(set(fact.amenities) & set(taste.amenities))
    score += 1.0 if fact.property_type == taste.property_type else 0.0
    score -= 2.0 * abs(math.log(price) - taste.price_level)
    return score + rng.gauss(0, 0.5)


def generate(*, users: int = 300, properties: int = 400, cities: int = 12, seed: int = 7) -> World:
    """A catalogue, users with planted tastes and their sessions, split by time at 80%."""
    rng = random.Random(seed)
    city_names = [f"City{c:02d}" for c in range(cities)]
    city_price = {c: rng.uniform(math.log(60), math.log(250)) for c in city_names}
    facts, prices = [], {}
    for index in range(properties):
        city = city_names[index % cities] if index < cities * 2 else rng.choice(city_names)
        kind = rng.choice(TYPES)
        amenities = tuple(sorted(rng.sample(AMENITIES, rng.randint(2, 5))))
        fact = PropertyFact(
            uuid.UUID(int=rng.getrandbits(128)),
            f"{kind.title()} {index} in {city}",
            city,
            "XX",
            rng.uniform(-60, 60),
            rng.uniform(-150, 150),
            kind,
            amenities,
            rng.randint(30, 50),
            f"A {kind} with {' and '.join(amenities)}",
            True,
        )
        facts.append(fact)
        prices[fact.property_id.hex] = math.exp(rng.gauss(city_price[city], 0.5))
    by_city: dict[str, list[PropertyFact]] = {}
    for fact in facts:
        by_city.setdefault(fact.city, []).append(fact)
    span = timedelta(days=60)
    split = BASE + span * 0.8
    tastes, train, held_out = {}, [], {}
    for _ in range(users):
        user = uuid.UUID(int=rng.getrandbits(128))
        home = tuple(rng.sample(city_names, rng.choice((1, 1, 2))))
        taste = Taste(
            home,
            rng.gauss(sum(city_price[c] for c in home) / len(home), 0.4),
            tuple(rng.sample(AMENITIES, 3)),
            rng.choice(TYPES),
        )
        tastes[user] = taste
        for _ in range(rng.randint(3, 8)):
            start = BASE + timedelta(seconds=rng.uniform(0, span.total_seconds()))
            city = rng.choice(home) if rng.random() < 0.85 else rng.choice(city_names)
            records = _session(rng, taste, city, by_city[city], prices, start)
            if start < split:
                train.append(SignalBatch(uuid.uuid4(), _ms(start), user, None, records))
            else:
                booked = {r.property_id.hex for r in records if r.kind == "booking"}
                if booked:
                    held_out.setdefault(user, set()).update(booked)
    return World(facts, prices, tastes, train, held_out)


def _session(rng, taste: Taste, city: str, stays: list[PropertyFact], prices, start: datetime) -> list[SignalRecord]:
    check_in = (start + timedelta(days=rng.randint(7, 60))).date()
    nights = rng.randint(1, 6)
    guests = rng.choice((1, 2, 2, 2, 3, 4))
    at = start
    records = [
        SignalRecord(
            "search", _ms(at), city=city, check_in=check_in, check_out=check_in + timedelta(days=nights), guests=guests
        )
    ]
    # What the search showed: up to 20 stays of the city, best rated first, of which the user looks at some.
    shown = sorted(stays, key=lambda f: -(f.rating_tenths or 0))[:20]
    utilities = {f.property_id.hex: _utility(taste, f, prices[f.property_id.hex], rng) for f in shown}
    weights = [math.exp(utilities[f.property_id.hex]) for f in shown]
    viewed = {f.property_id.hex: f for f in rng.choices(shown, weights=weights, k=rng.randint(3, 8))}
    for position, fact in enumerate(viewed.values()):
        at += timedelta(seconds=rng.randint(5, 90))
        item = fact.property_id
        records.append(SignalRecord("click", _ms(at), item, position=position))
        records.append(SignalRecord("view", _ms(at), item, price=round(prices[item.hex] * 100)))
        records.append(SignalRecord("dwell", _ms(at) + 1, item, ms=rng.randint(2_000, 120_000)))
        if utilities[item.hex] > 4 and rng.random() < 0.3:
            records.append(SignalRecord("wishlist", _ms(at) + 2, item))
    if rng.random() < 0.6:
        best = max(viewed.values(), key=lambda f: utilities[f.property_id.hex] + rng.gauss(0, 0.3))
        at += timedelta(minutes=5)
        nightly = round(prices[best.property_id.hex] * 100)
        records.append(
            SignalRecord("booking", _ms(at), best.property_id, check_in=check_in, guests=guests, price=nightly)
        )
    return records


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def train_model(batches: list[SignalBatch], facts: list[PropertyFact], now_ms: int) -> TrainedModel:
    subjects, items, kinds, at_ms, ms = [], [], [], [], []
    for batch in batches:
        for s in batch.signals:
            subjects.append(batch.subject)
            items.append(s.property_id.hex if s.property_id else None)
            kinds.append(s.kind)
            at_ms.append(s.at_ms)
            ms.append(s.ms if s.ms is not None else 0)
    data = models.interactions(
        np.asarray(subjects, dtype=object),
        np.asarray(items, dtype=object),
        np.asarray(kinds, dtype=object),
        np.asarray(at_ms, dtype=np.int64),
        np.asarray(ms, dtype=np.int64),
        now_ms,
    )
    user_factors, item_factors = models.fit_als(data)
    return TrainedModel("evaluation", data.users, user_factors, data.items, item_factors, ContentIndex.of(facts), {})


def ndcg_at(ranked: list[str], relevant: set[str], k: int = 10) -> float:
    gain = sum(1 / math.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return gain / ideal if ideal else 0.0


def recall_at(ranked: list[str], relevant: set[str], k: int = 10) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


async def evaluate(world: World, *, k: int = 10, seed: int = 7) -> dict:
    """NDCG@k, recall@k and coverage per method (see the module docstring)."""
    settings = PersonalizationSettings(decay_epoch=date(2026, 1, 1), profile_cap=500, recent_views=50)
    store = MemoryProfileStore(settings)
    facts = PropertyFacts(world.facts)
    decay = Decay.of(settings)
    for start in range(0, len(world.train), 200):
        await store.apply(world.train[start : start + 200], lambda fresh, recent: fold(fresh, facts, decay, recent))
    split_ms = max(s.at_ms for b in world.train for s in b.signals)
    trained = train_model(world.train, world.facts, split_ms)
    candidates = Candidates(world.facts, [world.prices[f.property_id.hex] * 100 for f in world.facts])
    ids = candidates.ids
    popular = dict(await store.popular(None, len(ids)))
    popularity = popularity_scores(popular, candidates)
    rng = np.random.default_rng(seed)
    results = {m: {"ndcg": [], "recall": [], "items": set()} for m in METHODS}
    for user, relevant in sorted(world.held_out.items()):
        subject = f"u:{user.hex}"
        profile = await store.profile(subject)
        covisited = await store.covisited_sum(profile.recently_viewed[:5], 50)
        personal = profile_scores(profile, candidates, covisited, trained.content)
        learned = trained.scores(subject, ids)
        scores = {
            "random": rng.random(len(ids)),
            "popularity": popularity,
            "profile": personal,
            "model": learned,
            "blend": blend(personal, learned, popularity),
        }
        for method, values in scores.items():
            top = [ids[i] for i in np.argsort(-np.asarray(values), kind="stable")[:k]]
            results[method]["ndcg"].append(ndcg_at(top, relevant, k))
            results[method]["recall"].append(recall_at(top, relevant, k))
            results[method]["items"].update(top)
    return {
        method: {
            f"ndcg_at_{k}": round(float(np.mean(r["ndcg"])), 4),
            f"recall_at_{k}": round(float(np.mean(r["recall"])), 4),
            "coverage": round(len(r["items"]) / len(ids), 4),
        }
        for method, r in results.items()
    } | {"users_evaluated": len(world.held_out), "train_batches": len(world.train), "catalogue": len(ids)}


def run(**generator) -> dict:
    return asyncio.run(evaluate(generate(**generator)))
