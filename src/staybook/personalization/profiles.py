"""The real-time layer's arithmetic: signals folded into decayed profiles, popularity and co-visitation.

Decay is *forward decay*: a signal at time t adds `w * 2^((t - epoch) / half_life)`
to a score, and a reader divides by `2^((now - epoch) / half_life)`. Adding is
commutative, so late and out-of-order signals give exactly the score in-order
ones would, and a store only ever increments (ZINCRBY), never reads-then-writes.
Scores of one half-life compare directly; the divisor matters only to show a
value. With a two-day half-life the scores stay finite for ~5 years after the
epoch (`personalization.decay_epoch`; moving it forward divides every score by
one constant).

Keys, relative to the store's prefix; `{u:<user>}` / `{s:<session>}` is a Redis
Cluster hash tag, so one subject's keys live in one slot:

| key | kind | what |
|---|---|---|
| `{subj}:city` `:guests` `:amen` `:ptype` `:items` | zset, decayed | affinity (cities, party sizes, ...) |
| `{subj}:recent` | zset, newest time | recently viewed properties |
| `{subj}:searches` | zset, newest time | recent searches `city|check_in|check_out|guests` |
| `{subj}:price` | hash, decayed | `w`, `sum`: weighted nightly price (the price band is sum / w) |
| `pop:<city>`, `pop:*` | zset, trending decay | properties by popularity in a city, everywhere |
| `popcity` | zset, trending decay | cities by searches and views |
| `cov:<property>` | zset, decayed | properties viewed by the same subjects near this one |
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from staybook.kernel.settings import PersonalizationSettings
from staybook.personalization.properties import PropertyFacts, city_key
from staybook.personalization.signals import KIND_WEIGHTS, SignalBatch

PROFILE_FIELDS = ("city", "guests", "amen", "ptype", "items")
# How many of a subject's recently viewed properties a new view is paired with (co-visitation).
COVISIT_WINDOW = 5


@dataclass(frozen=True, slots=True)
class Decay:
    epoch_ms: int
    profile_half_life_ms: float
    trending_half_life_ms: float

    @classmethod
    def of(cls, settings: PersonalizationSettings) -> Decay:
        epoch = datetime.combine(settings.decay_epoch, datetime.min.time(), tzinfo=UTC)
        return cls(
            int(epoch.timestamp() * 1000),
            settings.profile_half_life_hours * 3_600_000,
            settings.trending_half_life_hours * 3_600_000,
        )

    def profile(self, at_ms: int) -> float:
        return 2.0 ** ((at_ms - self.epoch_ms) / self.profile_half_life_ms)

    def trending(self, at_ms: int) -> float:
        return 2.0 ** ((at_ms - self.epoch_ms) / self.trending_half_life_ms)


@dataclass
class Deltas:
    """What a set of batches changes: increments, newest-wins times, touched subjects."""

    zincr: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    zlatest: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    hincr: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    subjects: set[str] = field(default_factory=set)
    signals: int = 0

    def add(self, key: str, member: str, value: float) -> None:
        self.zincr[key][member] += value

    def latest(self, key: str, member: str, at_ms: int) -> None:
        members = self.zlatest[key]
        if at_ms > members.get(member, -1):
            members[member] = at_ms


def subject_tag(subject: str) -> str:
    return "{" + subject + "}"


def fold(
    batches: Iterable[SignalBatch],
    facts: PropertyFacts,
    decay: Decay,
    recent: Mapping[str, list[str]] | None = None,
) -> Deltas:
    """The deltas of `batches`. `recent`: each subject's recently viewed properties before these
    batches, newest first (to pair new views with, for co-visitation)."""
    deltas = Deltas()
    recent = recent or {}
    for batch in batches:
        subject = batch.subject
        tag = subject_tag(subject) if subject else None
        if tag is not None:
            deltas.subjects.add(subject)
        viewed = list(recent.get(subject, ())) if subject else []
        for signal in sorted(batch.signals, key=lambda s: s.at_ms):
            deltas.signals += 1
            profile_w = decay.profile(signal.at_ms)
            trending_w = decay.trending(signal.at_ms)
            weight = KIND_WEIGHTS.get(signal.kind, 0.0)
            if signal.kind == "dwell" and signal.ms is not None:
                weight *= min(signal.ms / 30_000, 4.0)  # half a minute on a page is worth a view
            fact = facts.get(signal.property_id) if signal.property_id is not None else None
            city = fact.city if fact is not None else signal.city
            if city:
                deltas.add("popcity", city_key(city), trending_w * (weight or 1.0))
            if fact is not None and weight:
                item = signal.property_id.hex
                deltas.add(f"pop:{fact.city_key}", item, trending_w * weight)
                deltas.add("pop:*", item, trending_w * weight)
            if tag is None:
                continue
            if city:
                deltas.add(f"{tag}:city", city_key(city), profile_w * (weight or 1.0))
            if signal.guests:
                deltas.add(f"{tag}:guests", str(signal.guests), profile_w)
            if signal.kind == "search":
                for amenity in signal.amenities:
                    deltas.add(f"{tag}:amen", amenity, profile_w * 0.5)
                if signal.property_type:
                    deltas.add(f"{tag}:ptype", signal.property_type, profile_w * 0.5)
                if city or signal.check_in:
                    search = f"{city or ''}|{signal.check_in or ''}|{signal.check_out or ''}|{signal.guests or ''}"
                    deltas.latest(f"{tag}:searches", search, signal.at_ms)
                nights = _nights(signal.check_in, signal.check_out)
                if signal.price is not None and nights:
                    _price(deltas, tag, signal.price / nights, profile_w * 0.5)
                continue
            if fact is None or not weight:
                continue
            item = signal.property_id.hex
            deltas.add(f"{tag}:items", item, profile_w * weight)
            deltas.add(f"{tag}:ptype", fact.property_type, profile_w * weight)
            for amenity in fact.amenities:
                deltas.add(f"{tag}:amen", amenity, profile_w * weight / max(1, len(fact.amenities)) * 3)
            if signal.price is not None:
                _price(deltas, tag, float(signal.price), profile_w * weight)
            if signal.kind in ("view", "click", "booking"):
                for other in viewed[:COVISIT_WINDOW]:
                    if other != item:
                        deltas.add(f"cov:{other}", item, profile_w)
                        deltas.add(f"cov:{item}", other, profile_w)
                deltas.latest(f"{tag}:recent", item, signal.at_ms)
                if item in viewed:
                    viewed.remove(item)
                viewed.insert(0, item)
    return deltas


def _price(deltas: Deltas, tag: str, nightly: float, weight: float) -> None:
    prices = deltas.hincr[f"{tag}:price"]
    prices["w"] += weight
    prices["sum"] += weight * nightly


def _nights(check_in: date | None, check_out: date | None) -> int:
    if check_in is None or check_out is None:
        return 0
    return max(0, (check_out - check_in).days)


@dataclass
class Profile:
    """A subject's live profile, scores normalised to now (1.0 = one view just now)."""

    subject: str
    cities: list[tuple[str, float]] = field(default_factory=list)
    guests: list[tuple[str, float]] = field(default_factory=list)
    amenities: list[tuple[str, float]] = field(default_factory=list)
    property_types: list[tuple[str, float]] = field(default_factory=list)
    items: list[tuple[str, float]] = field(default_factory=list)
    recently_viewed: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    price_band: float | None = None

    @property
    def empty(self) -> bool:
        return not (self.cities or self.items or self.recently_viewed or self.searches)

    def as_document(self) -> dict:
        def top(pairs: list[tuple[str, float]]) -> list[dict]:
            return [{"key": key, "score": round(score, 4)} for key, score in pairs]

        return {
            "subject": self.subject,
            "cities": top(self.cities),
            "party_sizes": top(self.guests),
            "amenities": top(self.amenities),
            "property_types": top(self.property_types),
            "properties": top(self.items),
            "recently_viewed": self.recently_viewed,
            "recent_searches": self.searches,
            "nightly_price_band": None if self.price_band is None else round(self.price_band),
        }


def normalised(pairs: Iterable[tuple[str, float]], divisor: float) -> list[tuple[str, float]]:
    return [(member, score / divisor) for member, score in pairs if math.isfinite(score)]
