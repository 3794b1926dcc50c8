"""Input PostgreSQL or the signing code would choke on gets a 4xx problem naming the field, never a 500."""

from __future__ import annotations

import uuid

from tests.bookings import hold_body, seed_room_type
from tests.conftest import bearer
from tests.integration.test_catalog_api import PROPERTY
from tests.integration.test_identity_flows import auth, fast_hashing, login, register


def assert_refused_field(response, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [error["field"] for error in response.json()["errors"]], response.json()


async def test_a_nul_character_in_a_string_field_is_refused_with_its_path(pg_settings, client_for):
    pg_settings = fast_hashing(pg_settings)
    async with client_for(pg_settings) as client:
        await register(client)
        tokens = await login(client)
        renamed = await client.patch("/api/v1/me", json={"name": "a\u0000b"}, headers=auth(tokens))
        assert_refused_field(renamed, "body.name")

        host = bearer(pg_settings, "host", uuid.uuid4())
        created = await client.post("/api/v1/properties", json={**PROPERTY, "name": "Casa\u0000Rio"}, headers=host)
        assert_refused_field(created, "body.name")

        room = await seed_room_type(client.app.state.runtime, total=1)
        body = hold_body(room["room_type_id"])
        body["guest"]["email"] = "ada\u0000@example.com"
        held = await client.post(
            "/api/v1/bookings", json=body, headers=bearer(pg_settings) | {"Idempotency-Key": uuid.uuid4().hex}
        )
        assert_refused_field(held, "body.guest.email")
        # Nothing half-written: the account keeps its name, no property or booking exists.
        assert (await client.get("/api/v1/me", headers=auth(tokens))).json()["name"] == "Ana Lima"


async def test_an_unsubscribe_token_with_non_ascii_characters_is_not_valid(pg_settings, client_for):
    async with client_for(pg_settings) as client:
        response = await client.post("/api/v1/notifications/unsubscribe?token=a.%C3%A9")
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "query.token"
