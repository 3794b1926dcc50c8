"""Catalog and inventory over HTTP on SQLite and PostgreSQL: properties, room types, calendars,
availability, iCal, photos, and bad input that must leave nothing half-written."""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from datetime import date, timedelta

import httpx
import pytest
from PIL import Image
from sqlalchemy import func, select

from staybook.catalog import facts as catalog_facts
from staybook.catalog import service as catalog
from staybook.catalog.models import Photo, Property, RoomType
from staybook.inventory import service as inventory
from staybook.inventory.models import RoomNight
from staybook.inventory.service import Stay
from staybook.kernel.models import OutboxMessage
from tests.conftest import bearer

PROPERTY = {
    "name": "Casa do Rio",
    "description": "Rooms above the river",
    "property_type": "guesthouse",
    "address": "Rua da Ribeira 1",
    "city": "Porto",
    "country": "PT",
    "latitude": 41.14,
    "longitude": -8.61,
    "timezone": "Europe/Lisbon",
    "currency": "EUR",
    "amenities": ["wifi", "breakfast"],
    "check_in_time": "14:00",
    "check_out_time": "11:00",
    "cancellation_policy": "flexible",
}
ROOM_TYPE = {
    "name": "Double",
    "max_guests": 2,
    "beds": 1,
    "units": 3,
    "base_price": {"amount": 9000, "currency": "EUR"},
}


@pytest.fixture(params=["postgres", "sqlite"])
def db_settings(request):
    return request.getfixturevalue("pg_settings" if request.param == "postgres" else "sqlite_settings")


async def listed(client, host_headers, units: int = 3) -> tuple[str, str]:
    response = await client.post("/api/v1/properties", json=PROPERTY, headers=host_headers)
    assert response.status_code == 201, response.text
    property_id = response.json()["id"]
    response = await client.post(
        f"/api/v1/properties/{property_id}/room-types", json={**ROOM_TYPE, "units": units}, headers=host_headers
    )
    assert response.status_code == 201, response.text
    return property_id, response.json()["id"]


async def test_property_room_type_calendar_and_availability(db_settings, client_for, tmp_path):
    settings = db_settings.model_copy(
        update={"catalog": db_settings.catalog.model_copy(update={"media_dir": tmp_path})}
    )
    host = bearer(settings, "host")
    async with client_for(settings) as client:
        property_id, room_type_id = await listed(client, host)
        runtime = client.app.state.runtime
        async with runtime.db.session() as session:
            nights = await session.scalar(select(func.count()).where(RoomNight.room_type_id == uuid.UUID(room_type_id)))
            subjects = (await session.scalars(select(OutboxMessage.event_type))).all()
        assert nights == settings.inventory.horizon_days
        assert sorted(subjects) == ["inventory.changed", "property.created", "room_type.created"]

        check_in = date.today() + timedelta(days=10)
        query = {"check_in": str(check_in), "check_out": str(check_in + timedelta(days=3)), "guests": 2}
        first = await client.get(f"/api/v1/properties/{property_id}/availability", params=query)
        assert first.status_code == 200, first.text
        offer = first.json()["room_types"][0]
        assert (
            offer["bookable"]
            and offer["available_units"] == 3
            and offer["total"] == {"amount": 27000, "currency": "EUR"}
        )

        start = check_in - timedelta(days=5)
        response = await client.put(
            f"/api/v1/room-types/{room_type_id}/calendar",
            json={
                "from": str(start),
                "to": str(start + timedelta(days=30)),
                "price": {"amount": 10000, "currency": "EUR"},
                "rules": [{"kind": "weekday", "percent": 20, "weekdays": [4, 5]}],
                "min_stay": 2,
            },
            headers=host,
        )
        assert response.status_code == 200, response.text
        prices = {n["night"]: n["price"] for n in response.json()["nights"]}
        assert len(prices) == 30
        assert {prices[d] for d in prices if date.fromisoformat(d).weekday() in (4, 5)} == {12000}
        assert {prices[d] for d in prices if date.fromisoformat(d).weekday() not in (4, 5)} == {10000}

        # The calendar change invalidated the cached answer.
        second = await client.get(f"/api/v1/properties/{property_id}/availability", params=query)
        expected = sum(prices[str(check_in + timedelta(days=i))] for i in range(3))
        assert second.json()["room_types"][0]["total"]["amount"] == expected
        one_night = await client.get(
            f"/api/v1/properties/{property_id}/availability",
            params={**query, "check_out": str(check_in + timedelta(days=1))},
        )
        assert one_night.json()["room_types"][0]["reasons"] == ["minimum stay 2 nights"]

        # Two units booked on two nights; units may not go below that.
        async with runtime.db.unit_of_work() as uow:
            stay = Stay(uuid.UUID(room_type_id), check_in, check_in + timedelta(days=2), units=2)
            await inventory.hold(uow, stay)
            await inventory.confirm_hold(uow, stay)
        refused = await client.patch(f"/api/v1/room-types/{room_type_id}", json={"units": 1}, headers=host)
        assert refused.status_code == 409, refused.text
        assert [n["night"] for n in refused.json()["nights"]] == [str(check_in), str(check_in + timedelta(days=1))]
        refused = await client.put(
            f"/api/v1/room-types/{room_type_id}/calendar",
            json={"from": str(start), "to": str(start + timedelta(days=30)), "units": 0},
            headers=host,
        )
        assert refused.status_code == 409
        assert refused.headers["content-type"] == "application/problem+json"
        assert len(refused.json()["nights"]) == 2
        async with runtime.db.session() as session:
            totals = set(
                (
                    await session.scalars(
                        select(RoomNight.total).where(RoomNight.room_type_id == uuid.UUID(room_type_id))
                    )
                ).all()
            )
        assert totals == {3}

        grown = await client.patch(f"/api/v1/room-types/{room_type_id}", json={"units": 5}, headers=host)
        assert grown.status_code == 200 and grown.json()["units"] == 5
        third = await client.get(f"/api/v1/properties/{property_id}/availability", params=query)
        assert third.json()["room_types"][0]["available_units"] == 3  # 5 - 2 booked

        async with runtime.db.session() as session:
            summary = await catalog_facts.room_type_summary(session, uuid.UUID(room_type_id))
            assert summary.host_id and summary.timezone == "Europe/Lisbon" and summary.max_guests == 2
        # the price a guest is quoted for the stay: the availability answer
        quoted = (await client.get(f"/api/v1/properties/{property_id}/availability", params=query)).json()
        offer = quoted["room_types"][0]
        assert offer["total"]["amount"] == expected and offer["available_units"] == 3 and offer["bookable"]


async def test_ical_round_trip(db_settings, client_for):
    host = bearer(db_settings, "host")
    async with client_for(db_settings) as client:
        _, source = await listed(client, host, units=1)
        _, target = await listed(client, host, units=1)
        runtime = client.app.state.runtime
        today = date.today()
        async with runtime.db.unit_of_work() as uow:
            stay = Stay(uuid.UUID(source), today + timedelta(days=3), today + timedelta(days=5))
            await inventory.hold(uow, stay)
            await inventory.confirm_hold(uow, stay)
        closed = await client.put(
            f"/api/v1/room-types/{source}/calendar",
            json={"from": str(today + timedelta(days=10)), "to": str(today + timedelta(days=13)), "closed": True},
            headers=host,
        )
        assert closed.status_code == 200
        exported = await client.get(f"/api/v1/room-types/{source}/calendar.ics", headers=host)
        assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/calendar")
        assert exported.text.count("BEGIN:VEVENT") == 2
        imported = await client.post(
            f"/api/v1/room-types/{target}/calendar/import",
            files={"file": ("airbnb.ics", exported.content, "text/calendar")},
            headers=host,
        )
        assert imported.status_code == 200, imported.text
        assert imported.json()["closed_nights"] == 5
        calendar = await client.get(
            f"/api/v1/room-types/{target}/calendar",
            params={"from": str(today), "to": str(today + timedelta(days=20))},
            headers=host,
        )
        closed_nights = [n["night"] for n in calendar.json()["nights"] if n["closed"]]
        assert closed_nights == [str(today + timedelta(days=d)) for d in (3, 4, 10, 11, 12)]

        not_ical = await client.post(
            f"/api/v1/room-types/{target}/calendar/import",
            files={"file": ("x.ics", b"hello", "text/calendar")},
            headers=host,
        )
        assert not_ical.status_code == 422 and not_ical.json()["errors"][0]["field"] == "body.file"


async def test_signed_calendar_feed_needs_no_bearer_and_rotation_revokes_it(db_settings, client_for):
    host = bearer(db_settings, "host")
    async with client_for(db_settings) as client:
        _, room_type_id = await listed(client, host, units=1)
        _, other_room_type_id = await listed(client, host, units=1)
        today = date.today()
        await client.put(
            f"/api/v1/room-types/{room_type_id}/calendar",
            json={"from": str(today + timedelta(days=4)), "to": str(today + timedelta(days=6)), "closed": True},
            headers=host,
        )
        feed = await client.get(f"/api/v1/room-types/{room_type_id}/calendar-feed", headers=host)
        assert feed.status_code == 200, feed.text
        url = feed.json()["url"]
        assert f"/api/v1/room-types/{room_type_id}/calendar.ics?token=" in url

        fetched = await client.get(url)  # what a channel manager does: no Authorization header
        assert fetched.status_code == 200, fetched.text
        assert fetched.headers["content-type"].startswith("text/calendar")
        assert fetched.text.count("BEGIN:VEVENT") == 1 and f"{today + timedelta(days=4):%Y%m%d}" in fetched.text
        assert (await client.get(f"/api/v1/room-types/{room_type_id}/calendar-feed", headers=host)).json()["url"] == url

        token = url.split("token=")[1]
        for wrong in (
            f"/api/v1/room-types/{room_type_id}/calendar.ics?token={token[:-2]}xx",
            f"/api/v1/room-types/{room_type_id}/calendar.ics?token=",
            f"/api/v1/room-types/{other_room_type_id}/calendar.ics?token={token}",
            f"/api/v1/room-types/{uuid.uuid4()}/calendar.ics?token={token}",
        ):
            refused = await client.get(wrong)
            assert refused.status_code == 404, (wrong, refused.text)
            assert refused.headers["content-type"] == "application/problem+json"
            assert "BEGIN:VCALENDAR" not in refused.text

        rotated = await client.post(f"/api/v1/room-types/{room_type_id}/calendar-feed/rotate", headers=host)
        assert rotated.status_code == 200 and rotated.json()["url"] != url
        assert (await client.get(url)).status_code == 404
        assert (await client.get(rotated.json()["url"])).status_code == 200
        other_host = bearer(db_settings, "host")
        assert (
            await client.get(f"/api/v1/room-types/{room_type_id}/calendar-feed", headers=other_host)
        ).status_code == 403


def jpeg_with_gps() -> bytes:
    image = Image.new("RGB", (1200, 800), (200, 120, 40))
    exif = Image.Exif()
    exif[0x010F] = "staybook-camera"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (41.0, 8.0, 30.0)
    gps[3] = "W"
    gps[4] = (8.0, 36.0, 0.0)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    data = buffer.getvalue()
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)
    return data


@pytest.fixture(params=["local", "s3"])
def photo_settings(request, db_settings, tmp_path):
    """The photo pipeline's settings on each store: the local media directory and an S3 bucket."""
    catalog_settings = {"media_dir": tmp_path / "media", "max_photo_bytes": 300_000}
    if request.param == "s3":
        catalog_settings.update(request.getfixturevalue("s3_bucket_settings"))
    return db_settings.model_copy(update={"catalog": db_settings.catalog.model_validate(catalog_settings)})


def stored_keys(settings) -> list[str]:
    """Every object the photo store holds, whichever store it is."""
    if not settings.catalog.s3_bucket:
        media = settings.catalog.media_dir
        return sorted(str(p.relative_to(media)) for p in media.rglob("*") if p.is_file())
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=settings.catalog.s3_endpoint_url,
        region_name=settings.catalog.s3_region,
        aws_access_key_id=settings.catalog.s3_access_key_id,
        aws_secret_access_key=settings.catalog.s3_secret_access_key.get_secret_value(),
    )
    listed = client.list_objects_v2(Bucket=settings.catalog.s3_bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


async def fetch_variant(client, url: str) -> httpx.Response:
    """A variant as a browser gets it: served by the API, or via its redirect to a presigned S3 URL."""
    served = await client.get(url)
    if served.status_code != 307:
        assert "immutable" in served.headers["cache-control"]
        return served
    location = served.headers["location"]
    assert "Signature" in location or "X-Amz-Signature" in location
    assert served.headers["cache-control"].startswith("private, max-age=")
    async with httpx.AsyncClient() as outside:
        fetched = await outside.get(location)
    assert "immutable" in fetched.headers["cache-control"]
    return fetched


async def test_photo_pipeline_strips_gps(photo_settings, client_for):
    settings = photo_settings
    host = bearer(settings, "host")
    async with client_for(settings) as client:
        property_id, _ = await listed(client, host)
        uploaded = await client.post(
            f"/api/v1/properties/{property_id}/photos",
            files={"file": ("beach.jpg", jpeg_with_gps(), "image/jpeg")},
            headers=host,
        )
        assert uploaded.status_code == 202, uploaded.text
        runtime = client.app.state.runtime
        store = runtime.context_deps["catalog"].media
        assert store.kind == ("s3" if settings.catalog.s3_bucket else "local")
        async with runtime.db.session() as session:
            payload = (
                await session.scalars(select(OutboxMessage.payload).where(OutboxMessage.event_type == "photo.uploaded"))
            ).one()
        assert stored_keys(settings) == [payload["original_key"]]
        async with runtime.db.unit_of_work() as uow:
            await catalog.make_photo_variants(store, uow, payload, settings)
        photos = (await client.get(f"/api/v1/properties/{property_id}/photos")).json()
        assert photos[0]["status"] == "ready"
        variants = {v["name"]: v for v in photos[0]["variants"]}
        assert set(variants) == {"thumb", "thumb_webp", "large_webp"}
        assert variants["thumb"]["width"] == 320 and variants["large_webp"]["content_type"] == "image/webp"
        assert len(stored_keys(settings)) == 4
        for variant in variants.values():
            served = await fetch_variant(client, variant["url"])
            assert served.status_code == 200
            image = Image.open(io.BytesIO(served.content))
            assert image.size == (variant["width"], variant["height"])
            assert not image.getexif().get_ifd(0x8825)
            assert 0x010F not in image.getexif()
        original = await client.get(f"/api/v1/media/{payload['original_key']}")
        assert original.status_code == 404


async def test_bad_photos_are_refused_and_leave_nothing(photo_settings, client_for):
    settings = photo_settings
    host = bearer(settings, "host")
    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, format="PNG")
    gif = io.BytesIO()
    Image.new("RGB", (10, 10)).save(gif, format="GIF")
    heavy = io.BytesIO()  # a real photo, but more bytes than catalog.max_photo_bytes
    Image.frombytes("RGB", (400, 400), os.urandom(400 * 400 * 3)).save(heavy, format="PNG")
    truncated = jpeg_with_gps()[:200]
    async with client_for(settings) as client:
        property_id, _ = await listed(client, host)
        for name, data, status in (
            ("notes.jpg", b"these are not the pixels you are looking for" * 10, 422),
            ("bomb.png", bomb.getvalue(), 413),
            ("anim.jpg", gif.getvalue(), 415),
            ("heavy.png", heavy.getvalue(), 413),
            ("cut.jpg", truncated, 422),
            ("empty.jpg", b"", 422),
        ):
            response = await client.post(
                f"/api/v1/properties/{property_id}/photos", files={"file": (name, data, "image/jpeg")}, headers=host
            )
            assert response.status_code == status, (name, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["errors"][0]["field"] == "body.file"
        async with client.app.state.runtime.db.session() as session:
            assert await session.scalar(select(func.count()).select_from(Photo)) == 0
        assert stored_keys(settings) == []


BAD_PROPERTIES = [
    ({"amenities": ["wifi", "helipad"]}, "body.amenities[1]"),
    ({"currency": "EURO"}, "body.currency"),
    ({"currency": "XYZ"}, "body.currency"),
    ({"latitude": 91}, "body.latitude"),
    ({"longitude": -180.5}, "body.longitude"),
    ({"timezone": "Europe/Atlantis"}, "body.timezone"),
    ({"country": "XX"}, "body.country"),
    ({"check_in_time": "25:00"}, "body.check_in_time"),
    ({"cancellation_policy": "never"}, "body.cancellation_policy"),
    ({"property_type": "castle"}, "body.property_type"),
    ({"owner": "me"}, "body.owner"),
]


async def test_bad_input_is_refused_with_field_paths_and_nothing_written(sqlite_settings, client_for):
    host = bearer(sqlite_settings, "host")
    async with client_for(sqlite_settings) as client:
        for change, field in BAD_PROPERTIES:
            response = await client.post("/api/v1/properties", json={**PROPERTY, **change}, headers=host)
            assert response.status_code == 422, (change, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert field in [e["field"] for e in response.json()["errors"]], (change, response.json())
        property_id, room_type_id = await listed(client, host)
        bad_room = await client.post(
            f"/api/v1/properties/{property_id}/room-types",
            json={**ROOM_TYPE, "base_price": {"amount": 100, "currency": "USD"}},
            headers=host,
        )
        assert bad_room.status_code == 422 and bad_room.json()["errors"][0]["field"] == "body.base_price.currency"

        today = date.today()
        for params, field in (
            (
                {"check_in": str(today + timedelta(days=5)), "check_out": str(today + timedelta(days=4))},
                "query.check_out",
            ),
            (
                {"check_in": str(today + timedelta(days=5)), "check_out": str(today + timedelta(days=40))},
                "query.check_out",
            ),
            (
                {"check_in": str(today - timedelta(days=2)), "check_out": str(today + timedelta(days=1))},
                "query.check_in",
            ),
            ({"check_in": "2030-02-30", "check_out": "2030-03-02"}, "query.check_in"),
        ):
            response = await client.get(f"/api/v1/properties/{property_id}/availability", params=params)
            assert response.status_code == 422, (params, response.text)
            assert response.json()["errors"][0]["field"] == field
        backwards = await client.put(
            f"/api/v1/room-types/{room_type_id}/calendar",
            json={"from": str(today + timedelta(days=5)), "to": str(today), "closed": True},
            headers=host,
        )
        assert backwards.status_code == 422
        async with client.app.state.runtime.db.session() as session:
            assert await session.scalar(select(func.count()).select_from(Property)) == 1
            assert await session.scalar(select(func.count()).select_from(RoomType)) == 1
            assert await session.scalar(select(func.count()).where(RoomNight.closed.is_(True))) == 0


async def test_availability_is_cached_and_holds_elsewhere_invalidate_it(sqlite_settings, client_for):
    from staybook.kernel import metrics

    host = bearer(sqlite_settings, "host")
    async with client_for(sqlite_settings) as client:
        property_id, room_type_id = await listed(client, host, units=2)
        runtime = client.app.state.runtime
        check_in = date.today() + timedelta(days=20)
        query = {"check_in": str(check_in), "check_out": str(check_in + timedelta(days=3)), "guests": 1}
        url = f"/api/v1/properties/{property_id}/availability"
        hits = metrics.CACHE_REQUESTS.labels("availability", "hit")
        before = hits._value.get()
        assert (await client.get(url, params=query)).json()["room_types"][0]["available_units"] == 2
        assert (await client.get(url, params=query)).json()["room_types"][0]["available_units"] == 2
        assert hits._value.get() == before + 1
        # A hold made by the booking context: its inventory.changed reaches this process's replica
        # subscription through the relay and the bus, which drops the cached answer.
        async with runtime.db.unit_of_work() as uow:
            await inventory.hold(uow, Stay(uuid.UUID(room_type_id), check_in, check_in + timedelta(days=1)))
        while await runtime.relay.publish_pending():
            pass
        for _ in range(50):
            answer = (await client.get(url, params=query)).json()["room_types"][0]
            if answer["available_units"] == 1:
                break
            await asyncio.sleep(0.02)
        assert answer["available_units"] == 1


def _catalog_cache_hits() -> float:
    from staybook.kernel import metrics

    return metrics.CACHE_REQUESTS.labels("catalog", "hit")._value.get()


async def test_a_cached_property_shows_every_change_at_once(live_settings, client_for):
    """GET /properties/{id} answers from the cache; each change of the property or its room types
    shows on the very next read (the namespace is bumped after the change commits)."""
    host = bearer(live_settings, "host")
    async with client_for(live_settings) as client:
        property_id, room_type_id = await listed(client, host)
        path = f"/api/v1/properties/{property_id}"

        async def read() -> dict:
            answer = await client.get(path)
            assert answer.status_code == 200, answer.text
            return answer.json()

        first = await read()
        hits = _catalog_cache_hits()
        assert await read() == first and _catalog_cache_hits() == hits + 1  # the second read is a hit
        renamed = await client.patch(path, json={"name": "Casa Nova"}, headers=host)
        assert renamed.status_code == 200 and (await read())["name"] == "Casa Nova"
        room = await client.patch(f"/api/v1/room-types/{room_type_id}", json={"name": "Loft"}, headers=host)
        assert room.status_code == 200 and (await read())["room_types"][0]["name"] == "Loft"
        added = await client.post(f"{path}/room-types", json={**ROOM_TYPE, "name": "Suite"}, headers=host)
        assert added.status_code == 201 and [r["name"] for r in (await read())["room_types"]] == ["Loft", "Suite"]
        gone = await client.delete(f"/api/v1/room-types/{room_type_id}", headers=host)
        assert gone.status_code == 204 and [r["name"] for r in (await read())["room_types"]] == ["Suite"]
        archived = await client.delete(path, headers=host)
        assert archived.status_code == 204 and (await read())["status"] == "archived"
        unknown = await client.get(f"/api/v1/properties/{uuid.uuid4()}")
        assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
