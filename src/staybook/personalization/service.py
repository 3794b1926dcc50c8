"""Use cases of the personalization context: take signals in, fold them, recommend, forget a user.

One `Personalization` per process holds the context's parts (the signal log,
the profile store, the archive, the properties' facts, the loaded model); the
lifespan builds it from settings and hands it to the routes, handlers and jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import urllib.parse
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import structlog

from staybook.catalog import facts as catalog
from staybook.kernel.errors import InvalidInput, UnsupportedMediaType
from staybook.kernel.events import EventEnvelope
from staybook.kernel.runtime import Runtime
from staybook.kernel.security import Principal
from staybook.kernel.settings import PersonalizationSettings, Settings
from staybook.personalization import model as models
from staybook.personalization.archive import SignalArchive
from staybook.personalization.model import ContentIndex, TrainedModel
from staybook.personalization.profiles import Decay, Profile, fold
from staybook.personalization.properties import PropertyFact, PropertyFacts
from staybook.personalization.repository import ProfileStore
from staybook.personalization.schemas import SignalsAccepted
from staybook.personalization.signals import (
    SignalBatch,
    SignalRecord,
    check_signals,
    decode_envelope,
    epoch_ms,
    inflate,
    new_session,
    now_utc,
    verify_session,
)
from staybook.personalization.stream import SignalLog
from staybook.search.service import SearchDeps

log = structlog.get_logger("staybook.personalization")

JSON_TYPES = ("application/json", "text/plain", "")


@dataclass
class Personalization:
    settings: PersonalizationSettings
    secret: str
    facts: PropertyFacts
    store: ProfileStore
    signal_log: SignalLog
    archive: SignalArchive
    decay: Decay
    model: TrainedModel | None = None
    # The search context's deps of this process (set by the lifespan): recommendations search through it.
    search: SearchDeps | None = None
    served_searches: list[bytes] = field(default_factory=list)
    _content: ContentIndex | None = None
    _content_version: int = -1

    @property
    def content(self) -> ContentIndex:
        """Content vectors: the trained model's, else built from the facts (and rebuilt when they change)."""
        if self.model is not None and self.model.content is not None:
            return self.model.content
        if self._content is None or self._content_version != self.facts.version:
            self._content = ContentIndex.of(self.facts.all())
            self._content_version = self.facts.version
        return self._content


def session_id_for(settings: Settings, user_id: uuid.UUID | None = None) -> str:
    """A signed session id for a page's signals (`sendBeacon` cannot send a bearer token)."""
    return new_session(settings.secret_key.get_secret_value(), user_id)


# ---------------------------------------------------------------------------- signals in


async def accept_signals(
    deps: Personalization,
    body: bytes,
    *,
    content_type: str | None,
    content_encoding: str | None,
    principal: Principal | None,
    do_not_track: bool,
) -> SignalsAccepted:
    """Checks a client batch, makes its valid signals durable, and says what was refused, by index."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in JSON_TYPES:
        raise UnsupportedMediaType("Signals are sent as application/json (or text/plain from sendBeacon)")
    settings = deps.settings
    envelope = decode_envelope(inflate(body, content_encoding, settings.max_inflated_bytes), settings.max_batch_signals)
    batch_id = envelope.batch_id or uuid.uuid4()
    if do_not_track or envelope.do_not_track:
        return SignalsAccepted(batch_id=batch_id, accepted=0, do_not_track=True)
    session_id, bound_user = None, None
    if envelope.session is not None:
        session_id, bound_user = verify_session(deps.secret, envelope.session)
    user_id = principal.user_id if principal is not None else bound_user
    if user_id is None and session_id is None:
        raise InvalidInput("Anonymous signals need a signed session id (POST /api/v1/signals/session)", field="session")
    checked = check_signals(envelope, settings, now_utc(), deps.facts.exists)
    if not checked.signals:
        raise InvalidInput(
            "No signal of the batch is valid",
            errors=[{"field": r.field, "message": r.message, "status": r.status} for r in checked.rejected],
        )
    batch = SignalBatch(batch_id, epoch_ms(now_utc()), user_id, session_id, checked.signals)
    await deps.signal_log.append(batch)
    return SignalsAccepted(batch_id=batch_id, accepted=len(checked.signals), rejected=checked.rejected)


def observe_search(deps: Personalization, query_string: bytes) -> None:
    """Called by search for every search it serves: one append; parsed and published off the hot path."""
    if len(deps.served_searches) < 100_000:
        deps.served_searches.append(query_string)


def search_record(query_string: bytes, at_ms: int) -> SignalRecord | None:
    """A served search's query string as a `search` signal (None when it names no place or dates)."""
    params = urllib.parse.parse_qs(query_string.decode("utf-8", "replace"), max_num_fields=64)

    def one(name: str) -> str | None:
        values = params.get(name)
        return values[0][:200] if values else None

    def day(name: str) -> date | None:
        with contextlib.suppress(TypeError, ValueError):
            return date.fromisoformat(one(name) or "")
        return None

    city, check_in = one("city"), day("check_in")
    if not city and not check_in:
        return None
    guests = one("guests")
    amenities = tuple(a for raw in params.get("amenities", []) for a in raw.split(",") if a)[:30]
    return SignalRecord(
        "search",
        at_ms,
        city=city,
        check_in=check_in,
        check_out=day("check_out"),
        guests=int(guests) if guests and guests.isdigit() and 0 < int(guests) <= 50 else None,
        amenities=amenities,
        property_type=one("property_type"),
    )


async def flush_served_searches(deps: Personalization) -> int:
    """Publishes the searches served since the last flush as one server-side batch."""
    served, deps.served_searches = deps.served_searches, []
    now = epoch_ms(now_utc())
    records = [r for r in (search_record(q, now) for q in served) if r is not None]
    for start in range(0, len(records), deps.settings.max_batch_signals):
        chunk = records[start : start + deps.settings.max_batch_signals]
        await deps.signal_log.append(SignalBatch(uuid.uuid4(), now, None, None, chunk, origin="server"))
    return len(records)


async def record_booking(deps: Personalization, envelope: EventEnvelope) -> None:
    """A confirmed booking as a `booking` signal of its guest (batch id from the event: stored once)."""
    booking = envelope.payload["booking"]
    nights = int(booking.get("nights") or 0)
    total = booking.get("total") or {}
    property_id = uuid.UUID(str(booking["property"]["property_id"]))  # booking.ports.property_snapshot
    record = SignalRecord(
        "booking",
        epoch_ms(envelope.occurred_at),
        property_id,
        check_in=date.fromisoformat(booking["check_in"]),
        check_out=date.fromisoformat(booking["check_out"]),
        guests=int(booking["guests"]),
        price=int(total["amount"]) // nights if nights and "amount" in total else None,
        currency=total.get("currency"),
    )
    batch_id = uuid.uuid5(uuid.NAMESPACE_URL, f"staybook:booking-signal:{envelope.id}")
    user_id = uuid.UUID(str(booking["guest_user_id"]))
    await deps.signal_log.append(SignalBatch(batch_id, epoch_ms(now_utc()), user_id, None, [record], origin="server"))


# ---------------------------------------------------------------------------- the real-time layer


async def aggregate(deps: Personalization, batches: Sequence[SignalBatch]) -> int:
    """Folds batches into profiles, popularity and co-visitation; a batch handled before is skipped."""
    return await deps.store.apply(batches, lambda fresh, recent: fold(fresh, deps.facts, deps.decay, recent))


async def archive(deps: Personalization, batches: Sequence[SignalBatch]) -> int:
    return await asyncio.to_thread(deps.archive.write, batches)


async def profile_of(deps: Personalization, subject: str) -> Profile:
    return await deps.store.profile(subject)


# ---------------------------------------------------------------------------- the batch layer


async def train(runtime: Runtime, deps: Personalization | None = None) -> dict:
    """Fits a model on the archive and the current facts, saves it as the new version; returns its manifest."""
    settings = runtime.settings.personalization
    facts = deps.facts if deps is not None else await load_facts(runtime)
    signal_archive = deps.archive if deps is not None else SignalArchive(settings.archive_dir)
    table = await asyncio.to_thread(signal_archive.read)
    trained = await asyncio.to_thread(models.train, table, facts.all())
    await asyncio.to_thread(models.save, settings.model_dir, trained)
    if deps is not None:
        deps.model = trained
    log.info("personalization model trained", context=trained.manifest)
    return trained.manifest


def reload_model(deps: Personalization, model_dir) -> bool:
    """Loads the version CURRENT names if it is not the one served, or if its factors were
    rewritten since (an erasure in another process); True when it changed."""
    version = models.current_version(model_dir)
    if version is None:
        return False
    served = deps.model
    if served is not None and served.version == version and served.stamp == models.stamp_of(model_dir, version):
        return False
    try:
        deps.model = models.load(model_dir, version)
    except (FileNotFoundError, OSError, ValueError) as error:
        log.warning("model version not loadable", error_type=type(error).__name__, context={"version": version})
        return False
    log.info("personalization model loaded", context={"version": version})
    return True


# ---------------------------------------------------------------------------- privacy


async def erase_user(deps: Personalization, model_dir, user_id: uuid.UUID) -> dict[str, int]:
    """Forgets a user: the live profile, the archived signals, the rows of every kept model version."""
    subject = f"u:{user_id.hex}"
    await deps.store.erase(subject)
    archived = await asyncio.to_thread(deps.archive.erase_user, user_id)
    versions = await asyncio.to_thread(models.erase_subject, model_dir, subject)
    if deps.model is not None and deps.model.knows(subject):
        await asyncio.to_thread(reload_model, deps, model_dir)
    return {"archive_rows": archived, "model_versions": versions}


# ---------------------------------------------------------------------------- facts


def fact_of_listing(p) -> PropertyFact:
    return PropertyFact(
        p.property_id,
        p.name,
        p.city,
        p.country,
        p.latitude,
        p.longitude,
        p.property_type,
        tuple(p.amenities),
        p.rating_tenths,
        p.description,
        p.status == "active",
    )


def fact_of_event(payload: dict) -> PropertyFact:
    rating = payload.get("rating")
    return PropertyFact(
        uuid.UUID(str(payload["property_id"])),
        payload["name"],
        payload["city"],
        payload["country"],
        float(payload["latitude"]),
        float(payload["longitude"]),
        payload["property_type"],
        tuple(payload.get("amenities") or ()),
        None if rating is None else round(float(rating) * 10),
        payload.get("description") or "",
        payload.get("status") == "active",
    )


async def load_facts(runtime: Runtime) -> PropertyFacts:
    facts = PropertyFacts()
    async for listings in catalog.property_listings(runtime):
        facts.put(fact_of_listing(p) for p in listings)
    return facts


def apply_catalog_event(facts: PropertyFacts, envelope: EventEnvelope) -> None:
    if envelope.type in ("property.created", "property.updated"):
        facts.put([fact_of_event(envelope.payload)])
    elif envelope.type == "property.archived":
        fact = facts.get(uuid.UUID(str(envelope.payload["property_id"])))
        if fact is not None:
            facts.put([dataclasses.replace(fact, active=False)])
