"""Every route that changes a property, its room types, photos or calendar, tried as each kind of caller:
anonymous 401, guest 403, another host 403, the owner 2xx, an admin 2xx."""

from __future__ import annotations

import io
import uuid
from datetime import date, timedelta

import pytest
from PIL import Image

from tests.conftest import bearer
from tests.integration.test_catalog_api import PROPERTY, ROOM_TYPE


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (0, 90, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def ics() -> bytes:
    first = date.today() + timedelta(days=3)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:a@test\r\n"
        f"DTSTART;VALUE=DATE:{first:%Y%m%d}\r\nDTEND;VALUE=DATE:{first + timedelta(days=2):%Y%m%d}\r\n"
        "SUMMARY:Reserved\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    ).encode()


def calendar_range() -> dict:
    return {"from": str(date.today() + timedelta(days=1)), "to": str(date.today() + timedelta(days=8))}


# (method, path template, request kwargs factory)
HOST_ROUTES = [
    ("PATCH", "/api/v1/properties/{property_id}", lambda: {"json": {"name": "Renamed"}}),
    ("DELETE", "/api/v1/properties/{property_id}", dict),
    ("POST", "/api/v1/properties/{property_id}/room-types", lambda: {"json": ROOM_TYPE}),
    ("PATCH", "/api/v1/room-types/{room_type_id}", lambda: {"json": {"units": 4}}),
    ("DELETE", "/api/v1/room-types/{room_type_id}", dict),
    ("POST", "/api/v1/properties/{property_id}/photos", lambda: {"files": {"file": ("a.png", png(), "image/png")}}),
    ("PUT", "/api/v1/room-types/{room_type_id}/calendar", lambda: {"json": {**calendar_range(), "closed": True}}),
    ("GET", "/api/v1/room-types/{room_type_id}/calendar", lambda: {"params": calendar_range()}),
    ("GET", "/api/v1/room-types/{room_type_id}/calendar.ics", dict),
    ("GET", "/api/v1/room-types/{room_type_id}/calendar-feed", dict),
    ("POST", "/api/v1/room-types/{room_type_id}/calendar-feed/rotate", dict),
    (
        "POST",
        "/api/v1/room-types/{room_type_id}/calendar/import",
        lambda: {"files": {"file": ("a.ics", ics(), "text/calendar")}},
    ),
]
CALLERS = {"anonymous": 401, "guest": 403, "other host": 403, "owner": 200, "admin": 200}


@pytest.fixture
def settings(sqlite_settings, tmp_path):
    return sqlite_settings.model_copy(
        update={
            "inventory": sqlite_settings.inventory.model_copy(update={"horizon_days": 30}),
            "catalog": sqlite_settings.catalog.model_copy(update={"media_dir": tmp_path / "media"}),
        }
    )


def headers_for(settings, caller: str, owner_id: uuid.UUID) -> dict:
    if caller == "anonymous":
        return {}
    if caller == "owner":
        return bearer(settings, "host", owner_id)
    return bearer(settings, {"guest": "guest", "other host": "host", "admin": "admin"}[caller])


@pytest.mark.parametrize(("method", "path", "request_kwargs"), HOST_ROUTES, ids=[f"{m} {p}" for m, p, _ in HOST_ROUTES])
async def test_only_the_owner_or_an_admin_may(settings, client_for, method, path, request_kwargs):
    owner_id = uuid.uuid4()
    owner = bearer(settings, "host", owner_id)
    async with client_for(settings) as client:
        for caller, expected in CALLERS.items():
            created = await client.post("/api/v1/properties", json=PROPERTY, headers=owner)
            property_id = created.json()["id"]
            room_type = await client.post(f"/api/v1/properties/{property_id}/room-types", json=ROOM_TYPE, headers=owner)
            url = path.format(property_id=property_id, room_type_id=room_type.json()["id"])
            response = await client.request(
                method, url, headers=headers_for(settings, caller, owner_id), **request_kwargs()
            )
            if expected == 200:
                assert 200 <= response.status_code < 300, (caller, response.text)
            else:
                assert response.status_code == expected, (caller, response.text)
                assert response.headers["content-type"] == "application/problem+json"
                unchanged = await client.get(f"/api/v1/properties/{property_id}")
                assert unchanged.json()["name"] == PROPERTY["name"] and unchanged.json()["status"] == "active"
                assert [r["units"] for r in unchanged.json()["room_types"]] == [ROOM_TYPE["units"]]


async def test_creating_and_listing_own_properties_needs_a_host(settings, client_for):
    async with client_for(settings) as client:
        assert (await client.post("/api/v1/properties", json=PROPERTY)).status_code == 401
        assert (
            await client.post("/api/v1/properties", json=PROPERTY, headers=bearer(settings, "guest"))
        ).status_code == 403
        assert (await client.get("/api/v1/hosts/me/properties")).status_code == 401
        host = bearer(settings, "host")
        for _ in range(3):
            assert (await client.post("/api/v1/properties", json=PROPERTY, headers=host)).status_code == 201
        await client.post("/api/v1/properties", json=PROPERTY, headers=bearer(settings, "host"))
        first = await client.get("/api/v1/hosts/me/properties", params={"limit": 2}, headers=host)
        assert len(first.json()["items"]) == 2 and first.json()["next_cursor"]
        rest = await client.get(
            "/api/v1/hosts/me/properties", params={"limit": 2, "cursor": first.json()["next_cursor"]}, headers=host
        )
        assert len(rest.json()["items"]) == 1 and rest.json()["next_cursor"] is None
