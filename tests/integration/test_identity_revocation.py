"""Revoked rights end on the next request: role changes, erasure, password changes, signing out
everywhere; also across two API instances sharing one Redis and NATS."""

from __future__ import annotations

import asyncio
import time

import pytest

from staybook.identity.seed import seed_demo
from tests.bookings import hold_body, seed_room_type
from tests.integration.test_catalog_api import PROPERTY
from tests.integration.test_identity_flows import auth, fast_hashing, login, register


@pytest.fixture(params=["sqlite", "postgres"])
def any_settings(request):
    return fast_hashing(request.getfixturevalue("sqlite_settings" if request.param == "sqlite" else "pg_settings"))


async def admin_tokens(client) -> dict:
    summary = await seed_demo(client.app.state.runtime, properties=0, seed=1)
    account = next(a for a in summary["accounts"] if a["role"] == "admin")
    return await login(client, account["email"], account["password"])


async def user_id(client, tokens) -> str:
    return (await client.get("/api/v1/me", headers=auth(tokens))).json()["id"]


async def test_a_demoted_host_cannot_create_properties_with_the_old_token(any_settings, client_for):
    async with client_for(any_settings) as client:
        admin = await admin_tokens(client)
        await register(client, role="host")
        host = await login(client)
        assert (await client.post("/api/v1/properties", json=PROPERTY, headers=auth(host))).status_code == 201
        demoted = await client.patch(
            f"/api/v1/admin/users/{await user_id(client, host)}", json={"role": "guest"}, headers=auth(admin)
        )
        assert demoted.status_code == 200
        refused = await client.post("/api/v1/properties", json=PROPERTY, headers=auth(host))
        assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"
        # Signing in again (or refreshing) gives a token with the new role, and nothing more.
        renewed = (await client.post("/api/v1/auth/refresh", json={"refresh_token": host["refresh_token"]})).json()
        assert (await client.get("/api/v1/me", headers=auth(renewed))).json()["role"] == "guest"
        assert (await client.post("/api/v1/properties", json=PROPERTY, headers=auth(renewed))).status_code == 403


async def test_an_erased_account_cannot_book_with_its_token(any_settings, client_for):
    async with client_for(any_settings) as client:
        room = await seed_room_type(client.app.state.runtime, total=2)
        await register(client)
        guest = await login(client)
        assert (await client.delete("/api/v1/me", headers=auth(guest))).status_code == 204
        held = await client.post("/api/v1/bookings", json=hold_body(room["room_type_id"]), headers=auth(guest))
        assert held.status_code == 401
        async with client.app.state.runtime.db.session() as session:
            from sqlalchemy import text

            assert (await session.execute(text("SELECT count(*) FROM bookings"))).scalar() == 0


async def test_password_change_and_sign_out_everywhere_end_older_tokens(any_settings, client_for):
    async with client_for(any_settings) as client:
        await register(client)
        first, second = await login(client), await login(client)
        changed = await client.post(
            "/api/v1/me/password",
            json={"current_password": "violet-harbour-91", "new_password": "amber-lighthouse-27"},
            headers=auth(first),
        )
        assert changed.status_code == 200
        assert (await client.get("/api/v1/me", headers=auth(first))).status_code == 401
        assert (await client.get("/api/v1/me", headers=auth(second))).status_code == 401
        fresh = changed.json()
        assert (await client.get("/api/v1/me", headers=auth(fresh))).status_code == 200

        other = await login(client, password="amber-lighthouse-27")
        assert (await client.post("/api/v1/me/sessions/revoke", headers=auth(fresh))).status_code == 204
        for tokens in (fresh, other):
            assert (await client.get("/api/v1/me", headers=auth(tokens))).status_code == 401
            refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            assert refreshed.status_code == 401
        assert (
            await client.get("/api/v1/me", headers=auth(await login(client, password="amber-lighthouse-27")))
        ).status_code == 200


async def test_a_revocation_in_one_api_instance_holds_in_another(production_settings, client_for):
    """Two app instances on one PostgreSQL, Redis and NATS. The second has the old version cached
    (its cache would trust it for a minute): identity's event, not the cache's expiry, ends it."""
    settings = fast_hashing(production_settings)
    settings = settings.model_copy(
        update={"identity": settings.identity.model_copy(update={"token_version_cache_seconds": 60})}
    )
    # The first instance also relays the outbox, as the worker would.
    relaying = settings.model_copy(update={"run_worker_in_process": True})
    async with client_for(relaying) as first, client_for(settings) as second:
        admin = await admin_tokens(first)
        await register(first, role="host")
        host = await login(first)
        assert (await second.post("/api/v1/properties", json=PROPERTY, headers=auth(host))).status_code == 201
        demoted = await first.patch(
            f"/api/v1/admin/users/{await user_id(first, host)}", json={"role": "guest"}, headers=auth(admin)
        )
        assert demoted.status_code == 200
        assert (await first.post("/api/v1/properties", json=PROPERTY, headers=auth(host))).status_code == 401
        deadline, status = time.monotonic() + 10, 201
        while time.monotonic() < deadline:
            status = (await second.get("/api/v1/me", headers=auth(host))).status_code
            if status == 401:
                break
            await asyncio.sleep(0.05)
        assert status == 401
        assert (await second.post("/api/v1/properties", json=PROPERTY, headers=auth(host))).status_code == 401


async def test_a_fresh_instance_reads_the_version_from_redis(production_settings, client_for):
    """An instance that never saw the event (started after it) still refuses the old token."""
    settings = fast_hashing(production_settings)
    async with client_for(settings) as first:
        await register(first)
        guest = await login(first)
        assert (await first.post("/api/v1/me/sessions/revoke", headers=auth(guest))).status_code == 204
    async with client_for(settings) as late:
        assert (await late.get("/api/v1/me", headers=auth(guest))).status_code == 401


async def test_a_locked_account_is_signed_out_at_once_and_cannot_sign_in_until_unlocked(any_settings, client_for):
    async with client_for(any_settings) as client:
        admin = await admin_tokens(client)
        await register(client)
        guest = await login(client)
        guest_id = await user_id(client, guest)
        admin_id = await user_id(client, admin)
        assert (await client.post(f"/api/v1/admin/users/{guest_id}/lock", headers=auth(guest))).status_code == 403
        locked = await client.post(f"/api/v1/admin/users/{guest_id}/lock", headers=auth(admin))
        assert locked.status_code == 200 and locked.json()["locked_at"]
        assert (await client.get("/api/v1/me", headers=auth(guest))).status_code == 401
        refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": guest["refresh_token"]})
        assert refreshed.status_code == 401
        right = await client.post(
            "/api/v1/auth/login", json={"email": "ana@example.com", "password": "violet-harbour-91"}
        )
        wrong = await client.post(
            "/api/v1/auth/login", json={"email": "ana@example.com", "password": "not-her-password"}
        )
        assert right.status_code == 403 and "locked" in right.json()["detail"]
        assert wrong.status_code == 401  # the lock is told only to whoever knows the password
        own = await client.post(f"/api/v1/admin/users/{admin_id}/lock", headers=auth(admin))
        assert own.status_code == 403

        unlocked = await client.delete(f"/api/v1/admin/users/{guest_id}/lock", headers=auth(admin))
        assert unlocked.status_code == 200 and unlocked.json()["locked_at"] is None
        assert (await client.get("/api/v1/me", headers=auth(await login(client)))).status_code == 200
        actions = [
            e["action"]
            for e in (await client.get("/api/v1/admin/audit-log", headers=auth(admin))).json()["items"]
            if e["action"] in ("user.locked", "user.unlocked") or e["result"] == "denied"
        ]
        verify = (await client.get("/api/v1/admin/audit-log/verify", headers=auth(admin))).json()
    assert actions == ["user.unlocked", "auth.login", "user.locked"]
    assert verify["valid"] is True
