"""Identity over HTTP on real engines: registration, sign-in, MFA, refresh rotation, profile, roles, audit."""

from __future__ import annotations

import asyncio
import uuid

import pyotp
import pytest

from staybook.identity import mfa


def fast_hashing(settings):
    """Cheap argon2 parameters: these tests are about behaviour, the benchmark measures the real cost."""
    identity = settings.identity.model_copy(update={"argon2_memory_kib": 1024, "argon2_time_cost": 1})
    return settings.model_copy(update={"identity": identity})


@pytest.fixture(params=["sqlite", "postgres"])
def any_settings(request):
    base = request.getfixturevalue("sqlite_settings" if request.param == "sqlite" else "pg_settings")
    return fast_hashing(base)


@pytest.fixture
def pg_fast(pg_settings):
    return fast_hashing(pg_settings)


@pytest.fixture
def prod_fast(production_settings):
    return fast_hashing(production_settings)


async def register(client, email="ana@example.com", password="violet-harbour-91", role="guest", **extra):
    body = {"email": email, "password": password, "name": "Ana Lima", "role": role, **extra}
    response = await client.post("/api/v1/auth/register", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def login(client, email="ana@example.com", password="violet-harbour-91"):
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def auth(tokens) -> dict:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def test_register_login_me_refresh_logout(any_settings, client_for):
    async with client_for(any_settings) as client:
        accepted = await register(client, email="  Ana@Example.COM ", phone="+31 20 123 4567")
        assert accepted["email"] == "ana@example.com"
        tokens = await login(client, email="ANA@example.com")
        assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 900
        me = (await client.get("/api/v1/me", headers=auth(tokens))).json()
        assert me["email"] == "ana@example.com" and me["phone"] == "+31201234567" and me["role"] == "guest"

        rotated = (await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).json()
        assert rotated["refresh_token"] != tokens["refresh_token"]
        assert (await client.get("/api/v1/me", headers=auth(rotated))).status_code == 200

        assert (
            await client.post("/api/v1/auth/logout", json={"refresh_token": rotated["refresh_token"]})
        ).status_code == 204
        again = await client.post("/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
        assert again.status_code == 401
        assert again.headers["content-type"] == "application/problem+json"


async def test_duplicate_registration_and_unknown_email_leak_nothing(any_settings, client_for):
    async with client_for(any_settings) as client:
        first = await client.post(
            "/api/v1/auth/register",
            json={"email": "bo@example.com", "password": "violet-harbour-91", "name": "Bo", "role": "guest"},
        )
        second = await client.post(
            "/api/v1/auth/register",
            json={"email": "BO@example.com", "password": "other-harbour-92", "name": "Eve", "role": "host"},
        )
        assert first.status_code == second.status_code == 201
        assert first.json()["detail"] == second.json()["detail"]
        await login(client, email="bo@example.com")  # the original password still works

        wrong_password = await client.post(
            "/api/v1/auth/login", json={"email": "bo@example.com", "password": "not-the-password-1"}
        )
        unknown_email = await client.post(
            "/api/v1/auth/login", json={"email": "nobody@example.com", "password": "not-the-password-1"}
        )
        assert wrong_password.status_code == unknown_email.status_code == 401
        assert wrong_password.json()["detail"] == unknown_email.json()["detail"]


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("short1", "too-short"),
        ("password1234", "too-common"),
        ("aaaaaaaaaaaa", "too-simple"),
        ("ana-lima-forever", "contains-personal-data"),
    ],
)
async def test_password_rules_answer_422_with_field(sqlite_settings, client_for, password, code):
    async with client_for(fast_hashing(sqlite_settings)) as client:
        response = await client.post(
            "/api/v1/auth/register",
            json={"email": "ana@example.com", "password": password, "name": "Ana Lima", "role": "guest"},
        )
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert any(e["type"] == code and e["field"] == "body.password" for e in errors), errors


async def test_mfa_enrol_sign_in_recovery_code_once_and_disable(any_settings, client_for):
    async with client_for(any_settings) as client:
        await register(client)
        tokens = await login(client)
        setup = (await client.post("/api/v1/me/mfa/totp", headers=auth(tokens))).json()
        assert setup["otpauth_uri"].startswith("otpauth://totp/")
        totp = pyotp.TOTP(setup["secret"])
        wrong = await client.post("/api/v1/me/mfa/totp/confirm", json={"code": "000000"}, headers=auth(tokens))
        assert wrong.status_code == 422
        codes = (
            await client.post("/api/v1/me/mfa/totp/confirm", json={"code": totp.now()}, headers=auth(tokens))
        ).json()["recovery_codes"]
        assert len(codes) == 10

        challenge = (
            await client.post("/api/v1/auth/login", json={"email": "ana@example.com", "password": "violet-harbour-91"})
        ).json()
        assert challenge["mfa_required"] is True and "access_token" not in challenge
        # The MFA token is not an access token.
        assert (
            await client.get("/api/v1/me", headers={"Authorization": f"Bearer {challenge['mfa_token']}"})
        ).status_code == 401
        # A newer sign-in replaces the open challenge: the first MFA token no longer works.
        newer = (
            await client.post("/api/v1/auth/login", json={"email": "ana@example.com", "password": "violet-harbour-91"})
        ).json()
        replaced = await client.post(
            "/api/v1/auth/mfa/verify", json={"mfa_token": challenge["mfa_token"], "code": codes[0]}
        )
        assert replaced.status_code == 401
        # The confirm step spent the current TOTP step; a recovery code signs in, once.
        ok = await client.post("/api/v1/auth/mfa/verify", json={"mfa_token": newer["mfa_token"], "code": codes[0]})
        assert ok.status_code == 200, ok.text
        reused_code = await client.post(
            "/api/v1/auth/mfa/verify", json={"mfa_token": newer["mfa_token"], "code": codes[0]}
        )
        assert reused_code.status_code == 401
        # The MFA token signs in once, even with another good code.
        reused_token = await client.post(
            "/api/v1/auth/mfa/verify", json={"mfa_token": newer["mfa_token"], "code": codes[2]}
        )
        assert reused_token.status_code == 401

        signed_in = ok.json()
        bad_disable = await client.request(
            "DELETE", "/api/v1/me/mfa/totp", json={"code": "123456"}, headers=auth(signed_in)
        )
        assert bad_disable.status_code == 422
        disabled = await client.request(
            "DELETE", "/api/v1/me/mfa/totp", json={"code": codes[1]}, headers=auth(signed_in)
        )
        assert disabled.status_code == 204
        assert "access_token" in await login(client)


async def test_password_change_revokes_other_sessions(any_settings, client_for):
    async with client_for(any_settings) as client:
        await register(client)
        laptop, phone = await login(client), await login(client)
        wrong = await client.post(
            "/api/v1/me/password",
            json={"current_password": "nope-nope-nope", "new_password": "amber-lantern-77"},
            headers=auth(laptop),
        )
        assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "body.current_password"
        changed = await client.post(
            "/api/v1/me/password",
            json={"current_password": "violet-harbour-91", "new_password": "amber-lantern-77"},
            headers=auth(laptop),
        )
        assert changed.status_code == 200
        assert (
            await client.post("/api/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]})
        ).status_code == 401
        assert (
            await client.post("/api/v1/auth/refresh", json={"refresh_token": changed.json()["refresh_token"]})
        ).status_code == 200
        await login(client, password="amber-lantern-77")


async def test_profile_update_and_export(any_settings, client_for):
    async with client_for(any_settings) as client:
        await register(client)
        tokens = await login(client)
        patched = await client.patch(
            "/api/v1/me",
            json={
                "name": "Ana M. Lima",
                "timezone": "Europe/Lisbon",
                "date_of_birth": "1990-04-01",
                "address": {"line1": "Rua Augusta 1", "city": "Lisboa", "country": "PT"},
                "region": "eu",
            },
            headers=auth(tokens),
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["address"]["city"] == "Lisboa"
        export = (await client.get("/api/v1/me/export", headers=auth(tokens))).json()
        assert export["profile"]["date_of_birth"] == "1990-04-01"
        assert export["profile"]["name"] == "Ana M. Lima"
        assert any(e["action"] == "auth.login" for e in export["audit_log"])
        assert len(export["sessions"]) == 1


async def test_refresh_reuse_revokes_the_family(prod_fast, client_for):
    async with client_for(prod_fast) as client:
        await register(client)
        first = await login(client)
        second = (await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
        # The first token is shown again (a thief replays it): the whole family dies, the successor too.
        replay = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert replay.status_code == 401
        after = await client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
        assert after.status_code == 401
        other_session = await login(client)
        assert (
            await client.post("/api/v1/auth/refresh", json={"refresh_token": other_session["refresh_token"]})
        ).status_code == 200


async def test_twenty_parallel_refreshes_give_exactly_one_success(prod_fast, client_for):
    async with client_for(prod_fast) as client:
        await register(client)
        tokens = await login(client)
        responses = await asyncio.gather(
            *(client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}) for _ in range(20)),
            return_exceptions=True,
        )
    statuses = sorted(getattr(r, "status_code", repr(r)) for r in responses)
    assert statuses == [200] + [401] * 19


async def test_login_brute_force_is_blocked(prod_fast, client_for):
    identity = prod_fast.identity.model_copy(update={"login_per_account": (5, 900, 900)})
    async with client_for(prod_fast.model_copy(update={"identity": identity})) as client:
        await register(client)
        statuses = []
        for attempt in range(8):
            response = await client.post(
                "/api/v1/auth/login", json={"email": "ana@example.com", "password": f"guess-number-{attempt}"}
            )
            statuses.append(response.status_code)
        assert statuses[:5] == [401] * 5 and statuses[5:] == [429] * 3
        blocked = await client.post(
            "/api/v1/auth/login", json={"email": "ana@example.com", "password": "violet-harbour-91"}
        )
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        assert blocked.json()["type"].endswith("/rate-limited")


async def test_admin_lists_users_changes_roles_and_reads_the_audit_log(any_settings, client_for):
    from staybook.identity.seed import seed_demo
    from tests.conftest import bearer

    async with client_for(any_settings) as client:
        summary = await seed_demo(client.app.state.runtime, properties=0, seed=1)
        admin_account = next(a for a in summary["accounts"] if a["role"] == "admin")
        admin = await login(client, admin_account["email"], admin_account["password"])
        await register(client)
        users = (await client.get("/api/v1/admin/users?role=guest", headers=auth(admin))).json()["items"]
        ana = next(u for u in users if u["email"] == "ana@example.com")
        changed = await client.patch(f"/api/v1/admin/users/{ana['id']}", json={"role": "host"}, headers=auth(admin))
        assert changed.status_code == 200 and changed.json()["role"] == "host"
        assert (await login(client))["access_token"]
        me = (await client.get("/api/v1/me", headers=auth(await login(client)))).json()
        assert me["role"] == "host"

        page = (await client.get("/api/v1/admin/audit-log?action=user.role_changed", headers=auth(admin))).json()
        assert [e["details"] for e in page["items"]] == [{"from": "guest", "to": "host"}]
        failures = (await client.get("/api/v1/admin/audit-log?result=failure", headers=auth(admin))).json()
        assert failures["items"] == []
        verify = (await client.get("/api/v1/admin/audit-log/verify", headers=auth(admin))).json()
        assert verify["valid"] is True and verify["entries"] >= 4
        own = await client.patch(
            f"/api/v1/admin/users/{summary['host_user_id']}", json={"role": "superuser"}, headers=auth(admin)
        )
        assert own.status_code == 422 and own.json()["errors"][0]["field"] == "body.role"
        missing = await client.patch(
            f"/api/v1/admin/users/{uuid.uuid4()}", json={"role": "host"}, headers=bearer(any_settings, "admin")
        )
        assert missing.status_code == 404


async def test_mfa_codes_are_single_use_within_their_step():
    secret = mfa.new_totp_secret()
    code = pyotp.TOTP(secret).now()
    step = mfa.matching_step(secret, code, last_step=0)
    assert step is not None
    assert mfa.matching_step(secret, code, last_step=step) is None
