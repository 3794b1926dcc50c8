"""Scoring candidates for one subject: the live profile, the trained model, and their blend.

Pure functions over a profile, the properties' facts and the model, so the
offline evaluation scores with exactly what the API serves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from staybook.personalization.model import ContentIndex, TrainedModel
from staybook.personalization.profiles import Profile
from staybook.personalization.properties import PropertyFact, city_key

# How much each part of the profile counts (the blend's weights were chosen on the offline
# evaluation's planted-taste users: bench/personalization_quality.py).
PROFILE_WEIGHTS = {"items": 1.0, "covisit": 0.8, "content": 0.6, "city": 1.2, "type": 0.3, "amenity": 0.4, "price": 0.4}
MODEL_WEIGHT = 0.3
POPULARITY_WEIGHT = 0.15


@dataclass(frozen=True, slots=True)
class Candidates:
    facts: Sequence[PropertyFact]
    nightly_prices: Sequence[float | None] | None = None

    @property
    def ids(self) -> list[str]:
        return [f.property_id.hex for f in self.facts]


def _scaled(values: np.ndarray) -> np.ndarray:
    top = float(values.max()) if values.size else 0.0
    return values / top if top > 0 else np.zeros_like(values)


def profile_scores(
    profile: Profile,
    candidates: Candidates,
    covisited: dict[str, float] | None = None,
    content: ContentIndex | None = None,
) -> np.ndarray:
    """How well each candidate fits the live profile, in [0, ~4]."""
    ids = candidates.ids
    count = len(ids)
    if count == 0 or profile.empty:
        return np.zeros(count, dtype=np.float32)
    items = dict(profile.items)
    cities = dict(profile.cities)
    types = dict(profile.property_types)
    amenities = dict(profile.amenities)
    facts = candidates.facts
    parts = {
        "items": np.asarray([items.get(i, 0.0) for i in ids], dtype=np.float32),
        "covisit": np.asarray([(covisited or {}).get(i, 0.0) for i in ids], dtype=np.float32),
        "city": np.asarray([cities.get(city_key(f.city), 0.0) for f in facts], dtype=np.float32),
        "type": np.asarray([types.get(f.property_type, 0.0) for f in facts], dtype=np.float32),
        "amenity": np.asarray([sum(amenities.get(a, 0.0) for a in f.amenities) for f in facts], dtype=np.float32),
    }
    if content is not None and profile.items:
        parts["content"] = content.affinity(profile.items[:20], ids)
    total = np.zeros(count, dtype=np.float32)
    for name, values in parts.items():
        total += PROFILE_WEIGHTS[name] * _scaled(values)
    if profile.price_band and candidates.nightly_prices is not None:
        band = math.log(profile.price_band + 1)
        closeness = [
            0.0 if p is None or p <= 0 else math.exp(-abs(math.log(p + 1) - band) * 2)
            for p in candidates.nightly_prices
        ]
        total += PROFILE_WEIGHTS["price"] * np.asarray(closeness, dtype=np.float32)
    return total


def model_scores(model: TrainedModel | None, subject: str | None, candidates: Candidates) -> np.ndarray:
    if model is None or subject is None:
        return np.zeros(len(candidates.facts), dtype=np.float32)
    return model.scores(subject, candidates.ids)


def popularity_scores(popular: dict[str, float], candidates: Candidates) -> np.ndarray:
    return np.asarray([popular.get(i, 0.0) for i in candidates.ids], dtype=np.float32)


def blend(
    profile_part: np.ndarray, model_part: np.ndarray, popularity_part: np.ndarray, *, model_weight: float = MODEL_WEIGHT
) -> np.ndarray:
    """Profile plus model plus a little popularity, each scaled to its best candidate."""
    return (
        _scaled(profile_part) * 2
        + model_weight * _scaled(np.maximum(model_part, 0))
        + POPULARITY_WEIGHT * _scaled(popularity_part)
    )


def ranked(ids: list[str], scores: np.ndarray, limit: int) -> list[tuple[str, float]]:
    """Best first; ties keep the candidates' order (deterministic)."""
    order = np.lexsort((np.arange(len(ids)), -scores))[:limit]
    return [(ids[i], float(scores[i])) for i in order]
