"""Personalisation over HTTP in both topologies (SQLite + in-process bus + memory, and PostgreSQL +
NATS JetStream + Redis): signals become a live profile, a retried batch counts once, recommendations
and `sort=relevance` use the profile, served searches and confirmed bookings become signals, the
archive and the model are written, and `user.erased` removes the profile, archive rows and model rows."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from staybook.cli import _seed
from staybook.identity.events import UserErased
from staybook.personalization import model as models
from staybook.personalization.cli import _train as train_command
from tests.conftest import app_client, bearer

TODAY = datetime.now(UTC).date()
CHECK_IN = TODAY + timedelta(days=20)
CHECK_OUT = CHECK_IN + timedelta(days=2)


@pytest.fixture
def settings(live_settings, tmp_path):
    personalization = live_settings.personalization.model_copy(
        update={
            "archive_dir": str(tmp_path / "signals"),
            "model_dir": tmp_path / "models",
            "retrain_interval_seconds": 0,
            "search_signals_flush_seconds": 0.2,
        }
    )
    return live_settings.model_copy(update={"personalization": personalization})


async def eventually(check, timeout: float = 15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


async def _true(value: bool) -> bool:
    return value


def views(properties, at: datetime | None = None) -> list[dict]:
    moment = (at or datetime.now(UTC)).isoformat()
    return [{"kind": "view", "at": moment, "property_id": str(p.property_id), "price": 9000} for p in properties]


async def test_signals_profiles_recommendations_and_erasure(settings):
    await _seed(settings, 24, 7)
    user = uuid.uuid4()
    headers = bearer(settings, user_id=user)
    async with app_client(settings) as client:
        runtime = client.app.state.runtime
        deps = runtime.context_deps["personalization"]
        facts = sorted(deps.facts.all(), key=lambda f: f.property_id.hex)
        assert len(facts) >= 24
        # The worst rated stay of a city with several: the default order would show it last.
        city = max({f.city for f in facts}, key=lambda c: len(deps.facts.in_city(c)))
        same_city = deps.facts.in_city(city)
        assert len(same_city) >= 2
        liked = min(same_city, key=lambda f: (f.rating_tenths or 0, f.property_id.hex))
        facts = [liked, *[f for f in facts if f != liked]]

        batch_id = str(uuid.uuid4())
        body = {"batch_id": batch_id, "signals": views([liked] * 3 + facts[1:3])}
        first = await client.post("/api/v1/signals", json=body, headers=headers)
        assert first.status_code == 202, first.text
        assert first.json()["accepted"] == 5
        again = await client.post("/api/v1/signals", json=body, headers=headers)  # a retried beacon
        assert again.status_code == 202

        async def profile():
            answer = (await client.get("/api/v1/personalization/profile", headers=headers)).json()
            return answer if answer["properties"] else None

        seen = await eventually(profile)
        top = seen["properties"][0]
        assert top["key"] == liked.property_id.hex
        await asyncio.sleep(1.0)  # the duplicate, had it been applied, would have landed by now
        assert (await profile())["properties"][0]["score"] == pytest.approx(top["score"], rel=1e-6)

        # Anonymous clients need a signed session id; forged ones are refused.
        session = (await client.post("/api/v1/signals/session")).json()["session"]
        anonymous = await client.post("/api/v1/signals", json={"session": session, "signals": views(facts[3:4])})
        assert anonymous.status_code == 202
        forged = await client.post(
            "/api/v1/signals", json={"session": session[:-3] + "abc", "signals": views(facts[3:4])}
        )
        assert forged.status_code == 403 and forged.headers["content-type"] == "application/problem+json"
        dnt = await client.post("/api/v1/signals", json={"signals": views(facts[:1])}, headers={**headers, "DNT": "1"})
        assert dnt.json() == {"batch_id": dnt.json()["batch_id"], "accepted": 0, "rejected": [], "do_not_track": True}

        personal = (await client.get("/api/v1/recommendations", headers=headers)).json()
        assert personal["strategy"] == "personal"
        assert personal["items"][0]["property_id"] == str(liked.property_id)
        assert all(i["reason"] == "personal" for i in personal["items"])
        similar = await client.get(f"/api/v1/recommendations?property_id={liked.property_id}")
        assert similar.status_code == 200 and similar.json()["strategy"] == "similar"
        assert str(liked.property_id) not in [i["property_id"] for i in similar.json()["items"]]
        bookable = await client.get(
            "/api/v1/recommendations",
            params={"city": liked.city, "require": "price", "check_in": str(CHECK_IN), "check_out": str(CHECK_OUT)},
        )
        assert bookable.status_code == 200, bookable.text
        totals = [i["total"] for i in bookable.json()["items"]]
        assert totals == sorted(totals) and all(t is not None for t in totals)
        assert (await client.get(f"/api/v1/recommendations?property_id={uuid.uuid4()}")).status_code == 404
        assert (await client.get("/api/v1/recommendations?require=price&city=x")).status_code == 422

        # sort=relevance puts what this user likes first; an anonymous search keeps the rating order.
        query = {"city": liked.city, "check_in": str(CHECK_IN), "check_out": str(CHECK_OUT), "guests": 1}
        mine = (await client.get("/api/v1/search", params=query, headers=headers)).json()["items"]
        theirs = (await client.get("/api/v1/search", params=query)).json()["items"]
        assert len(mine) >= 2 and {i["property_id"] for i in mine} == {i["property_id"] for i in theirs}
        assert mine[0]["property_id"] == str(liked.property_id) != theirs[0]["property_id"]

        # Served searches become (anonymous) search signals: the city trends.
        async def city_trends():
            return liked.city.casefold() in dict(await deps.store.popular_cities(50))

        await eventually(city_trends)

        # Archive and model, then erasure of everything about the user.
        async def archived():
            table = deps.archive.read()
            return table.num_rows >= 5 and user.hex in set(table["user_id"].to_pylist())

        await eventually(archived)
        manifest = await train_command(settings)  # `staybook personalization train`, as another process runs it
        assert manifest["users"] >= 1

        async def served():  # the running API picks the new version up without a restart
            return deps.model is not None and deps.model.version == manifest["version"]

        await eventually(served)
        assert (await client.get("/api/v1/recommendations", headers=headers)).json()["model_version"] == manifest[
            "version"
        ]
        model_dir = settings.personalization.model_dir
        assert models.load(model_dir, manifest["version"]).knows(f"u:{user.hex}")

        async with runtime.db.unit_of_work() as uow:
            uow.emit(UserErased(user_id=user, at=datetime.now(UTC)))

        async def erased():
            table = deps.archive.read()
            in_model = models.load(model_dir, manifest["version"]).knows(f"u:{user.hex}")
            return user.hex not in set(table["user_id"].to_pylist()) and not in_model and not (await profile())

        await eventually(erased)
        await eventually(lambda: _true(not deps.model.knows(f"u:{user.hex}")))  # the served copy too
        assert deps.archive.read().num_rows > 0  # other subjects' signals stay


async def test_a_confirmed_booking_becomes_a_booking_signal(settings):
    """The booking.confirmed event, as the booking context publishes it, feeds the guest's profile."""
    from staybook.booking.events import BookingConfirmed, BookingSnapshot

    await _seed(settings, 4, 7)
    guest = uuid.uuid4()
    async with app_client(settings) as client:
        runtime = client.app.state.runtime
        deps = runtime.context_deps["personalization"]
        stay = deps.facts.all()[0]
        snapshot = BookingSnapshot(
            booking_id=uuid.uuid4(),
            reference="SB-TEST",
            status="confirmed",
            guest_user_id=guest,
            guest={},
            host_id=uuid.uuid4(),
            # The keys of booking.ports.property_snapshot and booking.views, as booking writes them.
            property={"property_id": str(stay.property_id), "name": stay.name},
            room_type={"room_type_id": str(uuid.uuid4()), "name": "Double"},
            check_in=str(CHECK_IN),
            check_out=str(CHECK_OUT),
            nights=2,
            units=1,
            guests=3,
            total={"amount": 30000, "currency": "EUR"},
            expires_at=None,
            cancellation_policy="flexible",
        )
        async with runtime.db.unit_of_work() as uow:
            uow.emit(BookingConfirmed(booking=snapshot, payment_id=uuid.uuid4()))

        async def booked():
            profile = await deps.store.profile(f"u:{guest.hex}")
            return profile if profile.items else None

        profile = await eventually(booked)
        assert profile.items[0][0] == stay.property_id.hex
        assert profile.guests[0][0] == "3" and profile.price_band == pytest.approx(15000)
