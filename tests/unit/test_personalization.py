"""Personalisation rules without I/O: checking a batch, session ids, the stream encoding, forward
decay, the folding of signals into profiles, the memory store's inbox and bounds, ranking."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest

from staybook.kernel.errors import Forbidden, InvalidInput, PayloadTooLarge
from staybook.kernel.settings import PersonalizationSettings
from staybook.personalization.profiles import Decay, fold
from staybook.personalization.properties import PropertyFact, PropertyFacts
from staybook.personalization.repository import MemoryProfileStore
from staybook.personalization.service import search_record
from staybook.personalization.signals import (
    SignalBatch,
    SignalRecord,
    check_signals,
    decode_batch,
    decode_envelope,
    encode_batch,
    epoch_ms,
    inflate,
    new_session,
    verify_session,
)

SETTINGS = PersonalizationSettings()
NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
SECRET = "unit-test-secret"


def fact(city: str = "Paris", amenities=("wifi",), property_type: str = "apartment") -> PropertyFact:
    return PropertyFact(
        uuid.uuid4(), f"Stay in {city}", city, "FR", 48.85, 2.35, property_type, amenities, 42, "", True
    )


def checked(signals: list[dict], facts: PropertyFacts | None = None, settings=SETTINGS):
    facts = facts or PropertyFacts()
    envelope = decode_envelope(orjson.dumps({"signals": signals}), settings.max_batch_signals)
    return check_signals(envelope, settings, NOW, facts.exists)


def test_good_and_bad_signals_are_told_apart_by_index_and_the_good_kept():
    paris = fact()
    facts = PropertyFacts([paris])
    at = NOW.isoformat()
    result = checked(
        [
            {"kind": "view", "at": at, "property_id": str(paris.property_id)},
            {"kind": "teleport", "at": at},
            {"kind": "view", "at": (NOW + timedelta(hours=1)).isoformat(), "property_id": str(paris.property_id)},
            {"kind": "view", "at": (NOW - timedelta(days=8)).isoformat(), "property_id": str(paris.property_id)},
            {"kind": "click", "at": at, "property_id": str(uuid.uuid4()), "position": 1},
            {"kind": "dwell", "at": at, "property_id": str(paris.property_id), "ms": -5},
            {"kind": "search", "at": at, "city": "Paris", "check_in": "2027-03-04", "check_out": "2027-03-01"},
            {"kind": "search", "at": "2026-12-02T08:00:00", "city": "Paris"},
            {"kind": "wishlist", "at": at, "property_id": str(paris.property_id)},
        ],
        facts,
    )
    assert [r.kind for r in result.signals] == ["view", "wishlist"]
    by_index = {r.index: r for r in result.rejected}
    assert sorted(by_index) == [1, 2, 3, 4, 5, 6, 7]
    assert "Unknown signal kind" in by_index[1].message and by_index[1].field == "signals[1].kind"
    assert by_index[2].field == "signals[2].at" and "future" in by_index[2].message
    assert "older" in by_index[3].message
    assert by_index[4].status == 404 and by_index[4].field == "signals[4].property_id"
    assert by_index[5].field == "signals[5].ms"
    assert by_index[6].field == "signals[6].check_out"
    assert "offset" in by_index[7].message


def test_an_oversized_signal_costs_only_itself():
    paris = fact()
    big = {"kind": "search", "at": NOW.isoformat(), "query_id": "q", "city": "P" * 150, "amenities": ["a" * 40] * 30}
    small_limit = PersonalizationSettings(max_signal_bytes=1024)
    result = checked([big, {"kind": "view", "at": NOW.isoformat(), "property_id": str(paris.property_id)}],
                     PropertyFacts([paris]), small_limit)  # fmt: skip
    assert [r.index for r in result.rejected] == [0] and result.rejected[0].status == 413
    assert len(result.signals) == 1


def test_batches_over_the_cap_and_malformed_envelopes_are_refused_whole():
    with pytest.raises(PayloadTooLarge):
        decode_envelope(orjson.dumps({"signals": [{}] * 501}), 500)
    with pytest.raises(InvalidInput) as error:
        decode_envelope(b'{"signals": 3}', 500)
    assert error.value.extensions["errors"][0]["field"] == "signals"
    with pytest.raises(InvalidInput):
        decode_envelope(b"not json", 500)


def test_gzip_is_inflated_within_its_bound():
    import gzip

    assert inflate(gzip.compress(b'{"signals": []}'), "gzip", 1000) == b'{"signals": []}'
    with pytest.raises(PayloadTooLarge):
        inflate(gzip.compress(b"0" * 10_000), "gzip", 1000)  # a small bomb stays small
    with pytest.raises(InvalidInput):
        inflate(b"not gzip", "gzip", 1000)


def test_session_ids_are_signed_and_forgeries_refused():
    user = uuid.uuid4()
    token = new_session(SECRET, user)
    session, bound = verify_session(SECRET, token)
    assert bound == user and len(session) == 32
    anonymous = new_session(SECRET)
    assert verify_session(SECRET, anonymous)[1] is None
    forged = anonymous.split(".")
    forged[2] = user.hex  # claim someone's user id with an anonymous session's mac
    for bad in [".".join(forged), anonymous[:-2] + "xx", "v1.abc", new_session("another-secret")]:
        with pytest.raises(Forbidden):
            verify_session(SECRET, bad)


def test_the_stream_encoding_round_trips_and_is_compact():
    paris = fact()
    signals = [SignalRecord("view", epoch_ms(NOW) + i, paris.property_id, price=12000) for i in range(500)]
    batch = SignalBatch(uuid.uuid4(), epoch_ms(NOW), uuid.uuid4(), None, signals)
    data = encode_batch(batch)
    assert decode_batch(data) == batch
    assert len(data) < 40 * len(signals)
    with pytest.raises(ValueError):
        decode_batch(b"xx" + data)


def test_forward_decay_halves_after_a_half_life_and_out_of_order_signals_add_up_the_same():
    decay = Decay.of(SETTINGS)
    now = epoch_ms(NOW)
    half_life = SETTINGS.profile_half_life_hours * 3_600_000
    assert decay.profile(now - half_life) / decay.profile(now) == pytest.approx(0.5)
    paris = fact()
    facts = PropertyFacts([paris])
    user = uuid.uuid4()
    signals = [SignalRecord("view", now - i * 3_600_000, paris.property_id) for i in range(5)]
    in_order = fold([SignalBatch(uuid.uuid4(), now, user, None, signals)], facts, decay)
    shuffled = fold(
        [
            SignalBatch(uuid.uuid4(), now, user, None, signals[3:]),
            SignalBatch(uuid.uuid4(), now, user, None, signals[:3]),
        ],
        facts,
        decay,
    )
    key = "{u:" + user.hex + "}:items"
    assert in_order.zincr[key][paris.property_id.hex] == pytest.approx(shuffled.zincr[key][paris.property_id.hex])
    assert in_order.zlatest["{u:" + user.hex + "}:recent"][paris.property_id.hex] == now


async def test_the_memory_store_applies_a_batch_once_and_stays_bounded():
    settings = PersonalizationSettings(profile_cap=10, recent_views=5)
    store = MemoryProfileStore(settings)
    decay = Decay.of(settings)
    stays = [fact("Lisbon") for _ in range(30)]
    facts = PropertyFacts(stays)
    user = uuid.uuid4()
    now = epoch_ms(datetime.now(UTC))
    batch = SignalBatch(
        uuid.uuid4(), now, user, None, [SignalRecord("view", now + i, s.property_id) for i, s in enumerate(stays)]
    )

    def folding(fresh, recent):
        return fold(fresh, facts, decay, recent)

    assert await store.apply([batch, batch], folding) == 1
    assert await store.apply([batch], folding) == 0  # redelivered: the inbox knows it
    profile = await store.profile(f"u:{user.hex}")
    assert len(profile.items) == 10 and len(profile.recently_viewed) == 5
    assert profile.recently_viewed[0] == stays[-1].property_id.hex
    assert profile.cities[0][0] == "lisbon"
    assert [i for i, _ in await store.covisited(stays[-1].property_id.hex, 10)]
    await store.erase(f"u:{user.hex}")
    assert (await store.profile(f"u:{user.hex}")).empty


def test_a_served_search_becomes_a_search_signal():
    record = search_record(b"city=Paris&check_in=2027-03-01&check_out=2027-03-04&guests=2&amenities=wifi,pool", 1)
    assert record.city == "Paris" and record.check_in == date(2027, 3, 1) and record.guests == 2
    assert record.amenities == ("wifi", "pool")
    assert search_record(b"q=%ff%fe&guests=abc", 1) is None


def test_client_signals_cannot_claim_server_kinds():
    result = checked([{"kind": "booking", "at": NOW.isoformat()}])
    assert result.rejected[0].field == "signals[0].kind"


def test_unknown_fields_are_refused_with_their_path():
    with pytest.raises(InvalidInput) as error:
        decode_envelope(b'{"signals": [], "extra": 1}', 500)
    assert error.value.extensions["errors"][0]["field"] == "extra"
    result = checked([{"kind": "search", "at": NOW.isoformat(), "colour": "red"}])
    assert result.rejected[0].field == "signals[0].colour"


def test_the_blend_beats_popularity_on_planted_tastes():
    """A small seed of the offline evaluation (bench/personalization_quality.py runs the large one)."""
    from staybook.personalization import evaluation

    figures = evaluation.run(users=120, properties=160, cities=8, seed=3)
    ndcg = {method: figures[method]["ndcg_at_10"] for method in evaluation.METHODS}
    assert figures["users_evaluated"] > 30
    assert ndcg["blend"] > 1.2 * ndcg["popularity"]
    assert ndcg["blend"] > ndcg["random"]
    assert 0 < figures["popularity"]["coverage"] < figures["blend"]["coverage"] <= 1
