"""problem+json mapping: every failure a client can cause is a 4xx with a field path, never a stack trace."""

import httpx
import pytest
from fastapi import FastAPI
from pydantic import Field

from staybook.kernel.errors import Conflict, InvalidInput, NotFound, TooManyRequests, field_path, install_error_handlers
from staybook.kernel.schemas import Money, Schema


class Guest(Schema):
    name: str = Field(min_length=1)
    email: str


class BookingRequest(Schema):
    guests: int = Field(ge=1, le=10)
    guest: Guest
    total: Money


def build_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/bookings")
    async def create(body: BookingRequest) -> dict:
        return {"ok": True}

    @app.get("/conflict")
    async def conflict() -> dict:
        raise Conflict("Not available", nights=["2030-01-02"])

    @app.get("/missing")
    async def missing() -> dict:
        raise NotFound("No booking with that id")

    @app.get("/invalid")
    async def invalid() -> dict:
        raise InvalidInput("check_out must be after check_in", field="query.check_out")

    @app.get("/limited")
    async def limited() -> dict:
        raise TooManyRequests(30)

    @app.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("secret internals")

    return app


@pytest.fixture
async def client():
    transport = httpx.ASGITransport(app=build_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


VALID = {"guests": 2, "guest": {"name": "Ada", "email": "ada@example.com"}, "total": {"amount": 100, "currency": "EUR"}}


async def test_valid_request_passes(client):
    assert (await client.post("/bookings", json=VALID)).status_code == 200


async def test_wrong_types_carry_field_paths(client):
    body = {**VALID, "guests": "many", "guest": {"name": "", "email": "x"}, "total": {"amount": 1.5, "currency": "XXY"}}
    response = await client.post("/bookings", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    fields = {e["field"] for e in response.json()["errors"]}
    assert {"body.guests", "body.guest.name", "body.total.amount", "body.total.currency"} <= fields


async def test_unknown_fields_are_refused(client):
    response = await client.post("/bookings", json={**VALID, "discount": 100})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.discount"


async def test_malformed_json_is_400(client):
    response = await client.post("/bookings", content=b'{"guests": 2,', headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["type"].endswith("/malformed-json")


async def test_domain_errors_map_to_problems(client):
    conflict = (await client.get("/conflict")).json()
    assert conflict["status"] == 409 and conflict["nights"] == ["2030-01-02"]
    assert (await client.get("/missing")).status_code == 404
    invalid = (await client.get("/invalid")).json()
    assert invalid["errors"] == [{"field": "query.check_out", "message": "check_out must be after check_in"}]
    limited = await client.get("/limited")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "30"


async def test_unexpected_errors_leak_nothing(client):
    response = await client.get("/boom")
    assert response.status_code == 500
    assert "secret internals" not in response.text and "Traceback" not in response.text
    assert response.json()["type"].endswith("/internal-error")


async def test_unknown_route_and_method(client):
    assert (await client.get("/nowhere")).json()["status"] == 404
    wrong_method = await client.delete("/bookings")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == "application/problem+json"


def test_field_path_formatting():
    assert field_path(("body", "rooms", 2, "name")) == "body.rooms[2].name"
