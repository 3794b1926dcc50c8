"""The HTTP edge of create_app: ids and trace context, metrics by route template, body limits, problems."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import Field

from staybook.kernel.schemas import Schema


class Echo(Schema):
    text: str = Field(max_length=10_000)


def add_echo_route(app) -> None:
    router = APIRouter()

    @router.post("/api/v1/echo/{item_id}")
    async def echo(item_id: int, body: Echo) -> dict:
        return {"item_id": item_id, "length": len(body.text)}

    app.include_router(router)


async def test_request_ids_and_traceparent(client_for, sqlite_settings):
    async with client_for(sqlite_settings) as client:
        incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        response = await client.get("/healthz/live", headers={"traceparent": incoming, "x-request-id": "req-42"})
        assert response.headers["x-request-id"] == "req-42"
        assert response.headers["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
        fresh = await client.get("/healthz/live")
        assert len(fresh.headers["traceparent"].split("-")[1]) == 32


async def test_metrics_by_route_template_and_status(client_for, sqlite_settings):
    async with client_for(sqlite_settings) as client:
        add_echo_route(client.app)
        assert (await client.post("/api/v1/echo/7", json={"text": "hi"})).status_code == 200
        assert (await client.post("/api/v1/echo/8", json={"text": 5})).status_code == 422
        await client.get("/no/such/route")
        metrics = (await client.get("/metrics")).text
    assert 'staybook_http_requests_total{method="POST",route="/api/v1/echo/{item_id}",status="200"} 1.0' in metrics
    assert 'route="/api/v1/echo/{item_id}",status="422"' in metrics
    assert 'route="<unmatched>",status="404"' in metrics
    assert "staybook_http_request_duration_seconds_bucket" in metrics
    assert "process_cpu_seconds_total" in metrics


async def test_body_limits_and_bad_input(client_for, sqlite_settings):
    async with client_for(sqlite_settings) as client:
        add_echo_route(client.app)
        too_big = await client.post("/api/v1/echo/1", json={"text": "x" * 9000})
        assert too_big.status_code == 413
        assert too_big.headers["content-type"] == "application/problem+json"

        async def chunks():
            for part in (b'{"text": "', b"x" * 9000, b'"}'):
                yield part

        chunked = await client.post("/api/v1/echo/1", content=chunks())
        assert chunked.status_code == 413
        malformed = await client.post("/api/v1/echo/1", content=b"{nope", headers={"content-type": "application/json"})
        assert malformed.status_code == 400
        unknown = await client.post("/api/v1/echo/1", json={"text": "a", "extra": 1})
        assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "body.extra"
        wrong_path_type = await client.post("/api/v1/echo/abc", json={"text": "a"})
        assert wrong_path_type.status_code == 422 and wrong_path_type.json()["errors"][0]["field"] == "path.item_id"


async def test_openapi_and_docs_are_served(client_for, sqlite_settings):
    async with client_for(sqlite_settings) as client:
        spec = (await client.get("/openapi.json")).json()
        assert "/healthz/ready" in spec["paths"]
        assert (await client.get("/docs")).status_code == 200


async def test_readiness_checks_redis_and_nats_when_configured(client_for, production_settings):
    async with client_for(production_settings) as client:
        body = (await client.get("/healthz/ready")).json()
    assert body["checks"] == {"database": "ok", "redis": "ok", "nats": "ok"}
