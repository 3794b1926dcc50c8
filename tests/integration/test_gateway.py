"""The gateway middleware in a real app: security headers, per-IP rate limit on Redis, trusted proxies, 413."""

from __future__ import annotations

import pytest

from tests.conftest import app_client


def gateway_settings(settings, **gateway):
    return settings.model_copy(update={"gateway": settings.gateway.model_copy(update=gateway)})


async def test_security_headers_on_every_response(sqlite_settings):
    async with app_client(sqlite_settings) as client:
        for response in (
            await client.get("/healthz/live"),
            await client.get("/api/v1/me"),
            await client.get("/no/such/route"),
            await client.post("/api/v1/auth/login", content=b"x" * 9000, headers={"content-type": "application/json"}),
        ):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["strict-transport-security"].startswith("max-age=")
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            assert "unsafe-inline" not in response.headers["content-security-policy"]
        docs = await client.get("/docs")
        assert "cdn.jsdelivr.net" in docs.headers["content-security-policy"]


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_rate_limit_per_client_ip_with_block(sqlite_settings, backend, request):
    settings = gateway_settings(sqlite_settings, rate_limit_requests=5, rate_limit_window_seconds=60)
    if backend == "redis":
        settings = settings.model_copy(
            update={
                "redis_url": request.getfixturevalue("redis_url"),
                "redis_key_prefix": request.getfixturevalue("redis_key_prefix"),
            }
        )
    async with app_client(settings) as client:
        statuses = [(await client.get("/api/v1/me")).status_code for _ in range(5)]
        assert statuses == [401] * 5
        limited = await client.get("/api/v1/me")
        assert limited.status_code == 429
        assert limited.headers["content-type"] == "application/problem+json"
        assert 0 < int(limited.headers["retry-after"]) <= 600  # the 10-minute block
        assert limited.headers["x-content-type-options"] == "nosniff"
        assert (await client.get("/healthz/live")).status_code == 200  # probes are exempt


async def test_trusted_proxy_forwarded_for_decides_the_client(sqlite_settings):
    settings = gateway_settings(
        sqlite_settings, rate_limit_requests=2, rate_limit_window_seconds=60, trusted_proxies=["127.0.0.1"]
    )
    async with app_client(settings) as client:
        one = {"X-Forwarded-For": "203.0.113.1"}
        two = {"X-Forwarded-For": "203.0.113.2"}
        assert [(await client.get("/api/v1/me", headers=one)).status_code for _ in range(3)] == [401, 401, 429]
        assert (await client.get("/api/v1/me", headers=two)).status_code == 401
    untrusted = gateway_settings(sqlite_settings, rate_limit_requests=2, rate_limit_window_seconds=60)
    async with app_client(untrusted) as client:
        # Without trusted proxies the header is the client's own claim, and ignored.
        statuses = [
            (await client.get("/api/v1/me", headers={"X-Forwarded-For": f"198.51.100.{n}"})).status_code
            for n in range(3)
        ]
        assert statuses == [401, 401, 429]


async def test_cors_allow_list(sqlite_settings):
    settings = gateway_settings(sqlite_settings, cors_origins=["https://app.staybook.example"])
    async with app_client(settings) as client:
        allowed = await client.options(
            "/api/v1/auth/login",
            headers={"Origin": "https://app.staybook.example", "Access-Control-Request-Method": "POST"},
        )
        assert allowed.headers["access-control-allow-origin"] == "https://app.staybook.example"
        denied = await client.options(
            "/api/v1/auth/login",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in denied.headers


async def test_metrics_need_the_scrapers_bearer_token(sqlite_settings):
    from pydantic import SecretStr

    from staybook.identity.pii import new_master_key

    settings = sqlite_settings.model_copy(
        update={"metrics": sqlite_settings.metrics.model_copy(update={"token": SecretStr("scrape-me-" + "x" * 20)})}
    )
    async with app_client(settings) as client:
        refused = await client.get("/metrics")
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
        scraped = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me-" + "x" * 20})
        assert scraped.status_code == 200 and "staybook_http_requests_total" in scraped.text
    production = sqlite_settings.model_copy(update={"environment": "production"}, deep=True)
    production.identity.pii_master_key = SecretStr(new_master_key())
    async with app_client(production) as client:
        # No token configured: production does not serve metrics to anyone.
        assert (await client.get("/metrics")).status_code == 404


async def test_metrics_count_against_the_per_ip_limit(sqlite_settings):
    settings = gateway_settings(sqlite_settings, rate_limit_requests=3, rate_limit_window_seconds=60)
    async with app_client(settings) as client:
        assert [(await client.get("/metrics")).status_code for _ in range(4)] == [200, 200, 200, 429]


@pytest.mark.parametrize("target", ["/api/v1/me%00", "/api/v1/search?city=Par%00is", "/api/v1/media/photos/%00"])
async def test_a_nul_character_in_the_path_or_query_is_a_400_problem(sqlite_settings, target):
    async with app_client(sqlite_settings) as client:
        response = await client.get(target)
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"] == "NUL characters are not accepted"
