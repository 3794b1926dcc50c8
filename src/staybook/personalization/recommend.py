"""The recommendations use case: personal, similar stays, near a place; bookable when dates are given.

Candidates come from the place asked (a city, a point), the profile's cities,
the model's top items, co-visitation and content similarity; with dates and
guests they are filtered (and priced) by a search through the search context,
so only stays that can be booked for that party on those nights are shown.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

import numpy as np

from staybook.kernel.dates import check_stay, stay_fields_in
from staybook.kernel.errors import InvalidInput, NotFound
from staybook.kernel.runtime import Runtime
from staybook.kernel.security import Principal
from staybook.personalization.profiles import Profile
from staybook.personalization.properties import PropertyFact, city_key
from staybook.personalization.ranking import (
    Candidates,
    blend,
    model_scores,
    popularity_scores,
    profile_scores,
    ranked,
)
from staybook.personalization.schemas import Recommendation, RecommendationsOut
from staybook.personalization.service import Personalization
from staybook.search import service as search
from staybook.search.query import MAX_LIMIT, Circle, SearchQuery, fold, haversine_km
from staybook.search.service import SearchDeps

NEARBY_RADIUS_KM = 25.0
CANDIDATES_PER_SOURCE = 200


@dataclass(frozen=True, slots=True)
class RecommendationRequest:
    property_id: uuid.UUID | None = None
    lat: float | None = None
    lon: float | None = None
    city: str | None = None
    require: str | None = None
    check_in: date | None = None
    check_out: date | None = None
    guests: int = 2
    limit: int = 10

    @property
    def dated(self) -> bool:
        return self.check_in is not None and self.check_out is not None


def _check(runtime: Runtime, request: RecommendationRequest) -> None:
    if (request.lat is None) != (request.lon is None):
        raise InvalidInput("lat and lon go together", field="query.lon" if request.lon is None else "query.lat")
    if (request.check_in is None) != (request.check_out is None):
        raise InvalidInput("check_in and check_out go together", field="query.check_out")
    if request.require and request.property_id is not None:
        raise InvalidInput("require applies to ?lat=&lon= or ?city=", field="query.require")
    if request.require and request.lat is None and request.city is None:
        raise InvalidInput("require needs ?lat=&lon= or ?city=", field="query.require")
    if request.require == "price" and not request.dated:
        raise InvalidInput("require=price needs check_in and check_out (prices are per stay)", field="query.check_in")
    if request.dated:
        inventory = runtime.settings.inventory
        with stay_fields_in("query"):
            check_stay(
                request.check_in,
                request.check_out,
                max_nights=inventory.max_stay_nights,
                horizon_days=inventory.horizon_days,
            )


async def _bookable(
    searches: SearchDeps, request: RecommendationRequest, *, city: str | None, circle: Circle | None
) -> dict[str, dict]:
    """Property id -> search hit, of the stays bookable in a place for the request's dates and party."""
    query = SearchQuery(
        check_in=request.check_in,
        check_out=request.check_out,
        guests=request.guests,
        city=fold(city) if city else None,
        circle=circle,
        sort="price" if request.require == "price" else ("distance" if circle and request.require else "rating"),
        limit=MAX_LIMIT,
    )
    page = await search.search(searches, query, None)
    return {uuid.UUID(str(hit["property_id"])).hex: hit for hit in page["items"]}


async def recommend(
    runtime: Runtime, deps: Personalization, principal: Principal | None, request: RecommendationRequest
) -> RecommendationsOut:
    """Ranks stays for the request; see the module docstring for where candidates come from."""
    _check(runtime, request)
    subject = f"u:{principal.user_id.hex}" if principal is not None else None
    profile = await deps.store.profile(subject) if subject else Profile(subject="")
    facts = deps.facts
    circle = None
    if request.lat is not None:
        circle = Circle(request.lat, request.lon, NEARBY_RADIUS_KM)
    covisited = await deps.store.covisited_sum(profile.recently_viewed[:5], 50)
    similar_to: PropertyFact | None = None
    if request.property_id is not None:
        similar_to = facts.get(request.property_id)
        if similar_to is None:
            raise NotFound("No such property")
        strategy = "similar"
        for other, score in await deps.store.covisited(similar_to.property_id.hex, 100):
            covisited[other] = covisited.get(other, 0.0) + score
        pool = _similar_pool(deps, similar_to, covisited)
    elif circle is not None or request.city:
        strategy = "nearby" if request.require is None else f"nearby:{request.require}"
        pool = _place_pool(facts, request.city, circle)
    elif subject and not profile.empty or (subject and deps.model is not None and deps.model.knows(subject)):
        strategy = "personal"
        pool = _personal_pool(deps, subject, profile, covisited)
    else:
        strategy = "popular"
        pool = [facts.get_hex(i) for i, _ in await deps.store.popular(None, CANDIDATES_PER_SOURCE)]
        pool = [f for f in pool if f is not None] or sorted(facts.all(), key=lambda f: -(f.rating_tenths or 0))[
            :CANDIDATES_PER_SOURCE
        ]
    pool = [f for f in pool if f.active and (similar_to is None or f.property_id != similar_to.property_id)]
    hits: dict[str, dict] = {}
    if request.dated:
        hits = await _hits_for(deps.search, request, pool, circle)
        pool = [f for f in pool if f.property_id.hex in hits]
    prices = [_nightly(hits.get(f.property_id.hex), request) for f in pool] if hits else None
    candidates = Candidates(pool, prices)
    ids = candidates.ids
    if request.require is not None:
        scores = _required_scores(request, pool, hits)
        reason = {"distance": "nearest", "rating": "best_rated", "price": "cheapest"}[request.require]
    else:
        city = request.city or (similar_to.city if similar_to else None)
        popular = dict(await deps.store.popular(city_key(city) if city else None, 500))
        if similar_to is not None:
            content = deps.content.affinity([(similar_to.property_id.hex, 1.0)], ids)
            scores = blend(
                content + 0.5 * _scaled_dict(covisited, ids), np.zeros(len(ids)), popularity_scores(popular, candidates)
            )
            reason = "similar"
        else:
            personal = profile_scores(profile, candidates, covisited, deps.content)
            learned = model_scores(deps.model, subject, candidates)
            scores = blend(personal, learned, popularity_scores(popular, candidates))
            reason = "personal" if (personal.any() or learned.any()) else "popular"
    items = []
    for item, score in ranked(ids, np.asarray(scores, dtype=np.float64), request.limit):
        fact = facts.get_hex(item)
        hit = hits.get(item)
        items.append(
            Recommendation(
                property_id=fact.property_id,
                name=fact.name,
                city=fact.city,
                country=fact.country,
                score=round(score, 6),
                reason=reason,
                distance_km=None
                if circle is None
                else round(float(haversine_km(circle.lat, circle.lon, fact.latitude, fact.longitude)), 3),
                rating_tenths=fact.rating_tenths,
                total=None if hit is None else hit["total"]["amount"],
                currency=None if hit is None else hit["total"]["currency"],
            )
        )
    return RecommendationsOut(strategy=strategy, model_version=deps.model.version if deps.model else None, items=items)


def _distances_km(lat: float, lon: float, pool: list[PropertyFact]) -> np.ndarray:
    """How far each property of the pool is from (lat, lon), in one vectorised pass."""
    lats = np.asarray([f.latitude for f in pool], dtype=np.float64)
    lons = np.asarray([f.longitude for f in pool], dtype=np.float64)
    return haversine_km(lat, lon, lats, lons)


def _scaled_dict(values: dict[str, float], ids: list[str]) -> np.ndarray:
    array = np.asarray([values.get(i, 0.0) for i in ids], dtype=np.float32)
    top = float(array.max()) if array.size else 0.0
    return array / top if top > 0 else array


def _similar_pool(deps: Personalization, base: PropertyFact, covisited: dict[str, float]) -> list[PropertyFact]:
    facts = deps.facts
    ids = {f.property_id.hex for f in facts.in_city(base.city)}
    ids.update(i for i, _ in deps.content.similar(base.property_id.hex, CANDIDATES_PER_SOURCE))
    ids.update(covisited)
    return [f for f in (facts.get_hex(i) for i in sorted(ids)) if f is not None]


def _place_pool(facts, city: str | None, circle: Circle | None) -> list[PropertyFact]:
    if city:
        pool = facts.in_city(city)
    else:
        pool = facts.all()
    if circle is not None:
        distances = _distances_km(circle.lat, circle.lon, pool)
        pool = [f for f, distance in zip(pool, distances, strict=True) if distance <= circle.radius_km]
    return sorted(pool, key=lambda f: f.property_id.hex)


def _personal_pool(
    deps: Personalization, subject: str, profile: Profile, covisited: dict[str, float]
) -> list[PropertyFact]:
    facts = deps.facts
    ids: set[str] = set(covisited) | {i for i, _ in profile.items}
    for city, _ in profile.cities[:3]:
        ids.update(f.property_id.hex for f in facts.in_city(city))
    if deps.model is not None:
        ids.update(i for i, _ in deps.model.top(subject, CANDIDATES_PER_SOURCE))
    return [f for f in (facts.get_hex(i) for i in sorted(ids)) if f is not None]


async def _hits_for(
    searches: SearchDeps, request: RecommendationRequest, pool: list[PropertyFact], circle: Circle | None
) -> dict[str, dict]:
    """Bookable stays among the pool: one search per city of the pool (at most five), or the circle."""
    if circle is not None:
        return await _bookable(searches, request, city=request.city, circle=circle)
    cities: dict[str, int] = {}
    for fact in pool:
        cities[fact.city] = cities.get(fact.city, 0) + 1
    hits: dict[str, dict] = {}
    for city in sorted(cities, key=lambda c: -cities[c])[:5]:
        hits.update(await _bookable(searches, request, city=city, circle=None))
    return hits


def _nightly(hit: dict | None, request: RecommendationRequest) -> float | None:
    if hit is None or not request.dated:
        return None
    return hit["total"]["amount"] / max(1, (request.check_out - request.check_in).days)


def _required_scores(request: RecommendationRequest, pool: list[PropertyFact], hits: dict[str, dict]) -> np.ndarray:
    """Higher is better: nearer, better rated, cheaper."""
    if request.require == "distance":
        lat = request.lat if request.lat is not None else _centre(pool)[0]
        lon = request.lon if request.lon is not None else _centre(pool)[1]
        return -_distances_km(lat, lon, pool)
    if request.require == "rating":
        return np.asarray([(f.rating_tenths if f.rating_tenths is not None else -1) for f in pool], dtype=np.float64)
    return np.asarray([-float(hits[f.property_id.hex]["total_in_currency"]["amount"]) for f in pool])


def _centre(pool: list[PropertyFact]) -> tuple[float, float]:
    if not pool:
        return 0.0, 0.0
    return sum(f.latitude for f in pool) / len(pool), sum(f.longitude for f in pool) / len(pool)
