"""Identity's protections on real engines: who may call what, bad input and tokens, erasure, audit, keys."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from datetime import UTC, datetime

import jwt
import pytest
from pydantic import SecretStr
from sqlalchemy import text

from staybook.identity import admin, privacy, seed, service
from staybook.identity import bootstrap as identity_bootstrap
from staybook.identity.bootstrap import SUBSCRIPTIONS
from staybook.identity.pii import new_master_key
from staybook.kernel.events import EventEnvelope
from staybook.kernel.orm import new_id
from tests.conftest import bearer
from tests.integration.test_identity_flows import auth, fast_hashing, login, register

# ---------------------------------------------------------------------------- authorization matrix

# (method, path, body) and the status each caller gets: anonymous, guest, host, admin.
# "ok" means the route ran (2xx, or 4xx from its own rules about the body) rather than an auth refusal.
ADMIN_ONLY = {"anonymous": 401, "guest": 403, "host": 403, "admin": "ok"}
SIGNED_IN = {"anonymous": 401, "guest": "ok", "host": "ok", "admin": "ok"}


def public(status: int) -> dict:
    """A route anyone may call: every caller gets the same answer (from the route's own rules)."""
    return dict.fromkeys(("anonymous", "guest", "host", "admin"), status)


ROUTES = [
    ("POST", "/api/v1/auth/register", {"email": "x@example.com", "password": "p", "name": "X"}, public(422)),
    ("POST", "/api/v1/auth/login", {"email": "x@example.com", "password": "wrong-password"}, public(401)),
    ("POST", "/api/v1/auth/refresh", {"refresh_token": "nope"}, public(401)),
    ("POST", "/api/v1/auth/logout", {"refresh_token": "nope"}, public(204)),
    ("GET", "/api/v1/me", None, SIGNED_IN),
    ("PATCH", "/api/v1/me", {"locale": "nl"}, SIGNED_IN),
    ("POST", "/api/v1/me/password", {"current_password": "x", "new_password": "y"}, SIGNED_IN),
    ("POST", "/api/v1/me/mfa/totp", None, SIGNED_IN),
    ("POST", "/api/v1/me/mfa/totp/confirm", {"code": "000000"}, SIGNED_IN),
    ("DELETE", "/api/v1/me/mfa/totp", {"code": "000000"}, SIGNED_IN),
    ("GET", "/api/v1/me/export", None, SIGNED_IN),
    ("GET", "/api/v1/admin/users", None, ADMIN_ONLY),
    ("GET", "/api/v1/admin/users/{other}", None, ADMIN_ONLY),
    ("PATCH", "/api/v1/admin/users/{other}", {"role": "host"}, ADMIN_ONLY),
    ("GET", "/api/v1/admin/audit-log", None, ADMIN_ONLY),
    ("GET", "/api/v1/admin/audit-log/verify", None, ADMIN_ONLY),
    ("GET", "/api/v1/admin/consumers", None, ADMIN_ONLY),
    ("GET", "/api/v1/admin/dead-letters", None, ADMIN_ONLY),
    ("GET", "/api/v1/admin/dead-letters/{other}", None, ADMIN_ONLY),
    ("POST", "/api/v1/admin/dead-letters/{other}/replay", None, ADMIN_ONLY),
    ("GET", "/api/v1/admin/health", None, ADMIN_ONLY),
    ("DELETE", "/api/v1/me", None, SIGNED_IN),  # last: it erases the caller
]


async def test_authorization_matrix(pg_settings, client_for):
    settings = fast_hashing(pg_settings)
    async with client_for(settings) as client:
        summary = await seed.seed_demo(client.app.state.runtime, properties=0, seed=1)
        accounts = {a["role"]: a for a in summary["accounts"]}
        headers = {"anonymous": {}}
        for role, account in accounts.items():
            headers[role] = auth(await login(client, account["email"], account["password"]))
        other = summary["host_user_id"]
        seen = {}
        for method, path, body, expected in ROUTES:
            for caller in ("anonymous", "guest", "host", "admin"):
                if method == "DELETE" and path == "/api/v1/me" and caller != "anonymous":
                    continue  # erasure is checked once below, for a throw-away account
                url = path.replace("{other}", other)
                response = await client.request(method, url, json=body, headers=headers[caller])
                seen[(method, path, caller)] = response.status_code
                want = expected[caller]
                if want == "ok":
                    assert response.status_code not in (401, 403), (method, path, caller, response.text)
                    assert response.status_code < 500
                else:
                    assert response.status_code == want, (method, path, caller, response.text)
                    if want >= 400:
                        assert response.headers["content-type"] == "application/problem+json"
        await register(client, email="leaving@example.com")
        leaving = await login(client, email="leaving@example.com")
        assert (await client.delete("/api/v1/me", headers=auth(leaving))).status_code == 204
        assert (await client.get("/api/v1/me", headers=auth(leaving))).status_code == 401
    assert len(seen) == (len(ROUTES) - 1) * 4 + 1


# ---------------------------------------------------------------------------- bad tokens


def forged(settings, **changes) -> str:
    now = int(time.time())
    claims = {
        "sub": str(uuid.uuid4()),
        "role": "admin",
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + 600,
        "typ": "access",
    }
    key = changes.pop("key", settings.jwt_keys[settings.jwt_active_key_id].get_secret_value())
    kid = changes.pop("kid", settings.jwt_active_key_id)
    claims.update(changes)
    return jwt.encode(claims, key, algorithm="HS256", headers={"kid": kid})


def alg_none(settings) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    header = b64(b'{"alg":"none","typ":"JWT","kid":"k1"}')
    _, payload, _ = forged(settings).split(".")
    return f"{header}.{payload}."


async def test_bad_tokens_get_401_problem(sqlite_settings, client_for):
    settings = sqlite_settings
    good = forged(settings)
    header, payload, signature = good.split(".")
    tampered_payload = (
        base64.urlsafe_b64encode(base64.urlsafe_b64decode(payload + "==").replace(b'"admin"', b'"guest"'))
        .decode()
        .rstrip("=")
    )
    tokens = {
        "expired": forged(settings, exp=int(time.time()) - 60, iat=int(time.time()) - 1000),
        "tampered": f"{header}.{tampered_payload}.{signature}",
        "wrong key": forged(settings, key="another-secret-entirely-0123456789abcdef"),
        "unknown kid": forged(settings, kid="k9"),
        "wrong audience": forged(settings, aud="someone-else"),
        "wrong issuer": forged(settings, iss="evil"),
        "alg none": alg_none(settings),
        "mfa typ": forged(settings, typ="mfa"),
        "garbage": "not.a.jwt",
    }
    async with client_for(settings) as client:
        for label, token in tokens.items():
            response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, label
            assert response.headers["content-type"] == "application/problem+json", label
            assert response.headers["www-authenticate"].startswith("Bearer"), label
        basic = await client.get("/api/v1/me", headers={"Authorization": "Basic abc"})
        assert basic.status_code == 401


async def test_key_rotation_keeps_old_tokens_valid(sqlite_settings, client_for):
    first, second = "first-key-0123456789abcdef0123456789ab", "second-key-0123456789abcdef012345678"
    base = sqlite_settings.model_dump(mode="python")
    base["secret_key"] = sqlite_settings.secret_key.get_secret_value()
    old = type(sqlite_settings).model_validate(base | {"jwt_keys": {"k1": first}, "jwt_active_key_id": "k1"})
    old_token = bearer(old, "guest")
    rotated = type(sqlite_settings).model_validate(
        base | {"jwt_keys": {"k1": first, "k2": second}, "jwt_active_key_id": "k2"}
    )
    new_token = bearer(rotated, "guest")
    assert jwt.get_unverified_header(new_token["Authorization"][7:])["kid"] == "k2"
    async with client_for(fast_hashing(rotated)) as client:
        # Both verify (the user does not exist, so the route itself says 401 after verification).
        for headers in (old_token, new_token):
            response = await client.get("/api/v1/me", headers=headers)
            assert response.json()["detail"] == "The account behind this token no longer exists"


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/auth/register", {"password": "violet-harbour-91", "name": "A"}, "body.email"),
        (
            "/api/v1/auth/register",
            {"email": "not-an-email", "password": "violet-harbour-91", "name": "A"},
            "body.email",
        ),
        ("/api/v1/auth/register", {"email": "a@example.com", "password": "violet-harbour-91", "name": ""}, "body.name"),
        (
            "/api/v1/auth/register",
            {"email": "a@example.com", "password": "violet-harbour-91", "name": "A", "role": "admin"},
            "body.role",
        ),
        (
            "/api/v1/auth/register",
            {"email": "a@example.com", "password": "violet-harbour-91", "name": "A", "phone": "12"},
            "body.phone",
        ),
        (
            "/api/v1/auth/register",
            {"email": "a@example.com", "password": "violet-harbour-91", "name": "A", "timezone": "Mars/Base"},
            "body.timezone",
        ),
        (
            "/api/v1/auth/register",
            {"email": "a@example.com", "password": "violet-harbour-91", "name": "A", "region": "mars"},
            "body.region",
        ),
        (
            "/api/v1/auth/register",
            {"email": "a@example.com", "password": "violet-harbour-91", "name": "A", "is_admin": True},
            "body.is_admin",
        ),
        ("/api/v1/auth/register", {"email": "a@example.com", "password": "x" * 2000, "name": "A"}, "body.password"),
        ("/api/v1/auth/login", {"email": "a@example.com"}, "body.password"),
        ("/api/v1/auth/login", {"email": 5, "password": "x"}, "body.email"),
        ("/api/v1/auth/mfa/verify", {"mfa_token": "x", "code": "1"}, "body.code"),
        ("/api/v1/auth/refresh", {}, "body.refresh_token"),
    ],
)
async def test_bad_input_is_422_with_field_path(sqlite_settings, client_for, path, body, field):
    async with client_for(fast_hashing(sqlite_settings)) as client:
        response = await client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_malformed_and_oversized_bodies(sqlite_settings, client_for):
    async with client_for(fast_hashing(sqlite_settings)) as client:
        malformed = await client.post(
            "/api/v1/auth/login", content=b'{"email": ', headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 400 and malformed.json()["type"].endswith("/malformed-json")
        huge = await client.post(
            "/api/v1/auth/register",
            json={"email": "a@example.com", "password": "p" * 9000, "name": "A"},
        )
        assert huge.status_code == 413 and huge.headers["content-type"] == "application/problem+json"
        me = await client.patch(
            "/api/v1/me",
            json={"address": {"line1": "x", "city": "y", "country": "nl"}},
            headers=bearer(sqlite_settings),
        )
        assert me.status_code == 422 and me.json()["errors"][0]["field"] == "body.address.country"


# ---------------------------------------------------------------------------- erasure


def text_values(sync_url: str) -> list[str]:
    """Every value of every text-like column of every table, as text."""
    import psycopg

    values: list[str] = []
    with psycopg.connect(sync_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND data_type IN ('text', 'character varying', 'json', 'jsonb', 'bytea', 'character')"
        ).fetchall()
        for table, column in columns:
            for (value,) in conn.execute(f'SELECT "{column}"::text FROM "{table}"'):
                if value is not None:
                    values.append(value)
    return values


async def test_erasure_leaves_no_plaintext_personal_data(pg_settings, client_for):
    settings = fast_hashing(pg_settings)
    email, phone, name = "erin.unique@example.com", "+442079460958", "Erin Quillfeather"
    async with client_for(settings) as client:
        await client.post(
            "/api/v1/auth/register",
            json={"email": email, "password": "violet-harbour-91", "name": name, "role": "guest", "phone": phone},
        )
        tokens = await login(client, email)
        await client.patch(
            "/api/v1/me",
            json={
                "address": {"line1": "221B Baker Street", "city": "London", "country": "GB"},
                "date_of_birth": "1985-02-03",
            },
            headers=auth(tokens),
        )
        before = "\n".join(text_values(settings.sync_database_url))
        # Sealed wherever stored, and events carry ids (ADR 0019): nothing to find even before erasure.
        for needle in (email, name, "221B Baker Street"):
            assert needle not in before, needle
        assert (await client.delete("/api/v1/me", headers=auth(tokens))).status_code == 204
        after = "\n".join(text_values(settings.sync_database_url))
        for needle in (email, phone, name, "Erin", "Quillfeather", "Baker Street", "1985-02-03", "20 7946 0958"):
            assert needle.lower() not in after.lower(), needle
        again = await client.post("/api/v1/auth/login", json={"email": email, "password": "violet-harbour-91"})
        assert again.status_code == 401
        # The address can be registered again, as a new account.
        await register(client, email=email)


# ---------------------------------------------------------------------------- audit of bookings and payments


def booking_envelope(event_type: str, **extra) -> EventEnvelope:
    booking = {
        "booking_id": str(uuid.uuid4()),
        "reference": "SB-7K2Q9",
        "status": event_type.split(".")[1],
        "guest_user_id": str(uuid.uuid4()),
        "guest": {"name": "Gina Guest", "email": "gina@example.com", "phone": "+31201234567", "locale": "en"},
        "host_id": str(uuid.uuid4()),
        "property": {"property_id": str(uuid.uuid4()), "name": "Canal House", "address": "Prinsengracht 1"},
        "room_type": {"room_type_id": str(uuid.uuid4()), "name": "Double"},
        "check_in": "2027-03-01",
        "check_out": "2027-03-04",
        "nights": 3,
        "units": 1,
        "guests": 2,
        "total": {"amount": 45000, "currency": "EUR"},
    }
    return EventEnvelope(
        new_id(), f"staybook.booking.{event_type}", event_type, datetime.now(UTC), {"booking": booking, **extra}
    )


async def test_booking_and_payment_events_land_in_the_audit_log(any_settings, make_runtime):
    runtime = await make_runtime(any_settings)
    confirmed = booking_envelope("booking.confirmed", payment_id=str(uuid.uuid4()))
    failed_payment = EventEnvelope(
        new_id(),
        "staybook.payments.payment.failed",
        "payment.failed",
        datetime.now(UTC),
        {
            "payment_id": str(uuid.uuid4()),
            "booking_id": str(uuid.uuid4()),
            "reason": "card_declined",
            "provider": "sandbox",
        },
    )
    by_subject = {s.subject: s for s in SUBSCRIPTIONS}
    booking_sub, payment_sub = by_subject["staybook.booking.>"], by_subject["staybook.payments.>"]
    assert await runtime.consumers.handle_once(booking_sub, confirmed) is True
    assert await runtime.consumers.handle_once(booking_sub, confirmed) is False  # redelivery: once only
    assert await runtime.consumers.handle_once(payment_sub, failed_payment) is True
    page = await admin.audit_log(runtime, resource_type="booking")
    [entry] = page["items"]
    assert entry.action == "booking.confirmed" and entry.resource_id == confirmed.payload["booking"]["booking_id"]
    assert str(entry.actor_id) == confirmed.payload["booking"]["guest_user_id"]
    assert "gina" not in str(entry.details).lower() and "Prinsengracht" not in str(entry.details)
    [payment] = (await admin.audit_log(runtime, result="failure"))["items"]
    assert payment.action == "payment.failed" and payment.details["reason"] == "card_declined"
    assert (await admin.verify_audit_chain(runtime))["valid"] is True


@pytest.fixture(params=["sqlite", "postgres"])
def any_settings(request):
    base = request.getfixturevalue("sqlite_settings" if request.param == "sqlite" else "pg_settings")
    return fast_hashing(base)


async def test_audit_chain_detects_tampering(sqlite_settings, make_runtime):
    runtime = await make_runtime(fast_hashing(sqlite_settings))
    for number in range(5):
        async with runtime.db.unit_of_work() as uow:
            await service.audit.append(
                uow.session, service.audit.AuditRecord("test.event", "thing", resource_id=str(number))
            )
    assert chain_verdict(await admin.verify_audit_chain(runtime)) == {"valid": True, "entries": 5, "broken_at": None}
    async with runtime.db.unit_of_work() as uow:
        await uow.session.execute(text("UPDATE audit_log SET result = 'failure' WHERE seq = 3"))
    assert chain_verdict(await admin.verify_audit_chain(runtime)) == {"valid": False, "entries": 2, "broken_at": 3}


async def test_audit_log_is_append_only_on_postgres(pg_settings, make_runtime):
    runtime = await make_runtime(fast_hashing(pg_settings))
    async with runtime.db.unit_of_work() as uow:
        await service.audit.append(uow.session, service.audit.AuditRecord("test.event", "thing"))
    with pytest.raises(Exception, match="append-only"):
        async with runtime.db.unit_of_work() as uow:
            await uow.session.execute(text("DELETE FROM audit_log"))


async def test_concurrent_audit_appends_keep_one_chain(pg_settings, make_runtime):
    runtime = await make_runtime(fast_hashing(pg_settings))

    async def one(number: int) -> None:
        async with runtime.db.unit_of_work() as uow:
            await service.audit.append(
                uow.session, service.audit.AuditRecord("test.event", "thing", resource_id=str(number))
            )

    # return_exceptions: every append finishes (and releases its connection) before the test judges.
    outcomes = await asyncio.gather(*(one(n) for n in range(10)), return_exceptions=True)
    assert [o for o in outcomes if o is not None] == []
    assert chain_verdict(await admin.verify_audit_chain(runtime)) == {"valid": True, "entries": 10, "broken_at": None}


# ---------------------------------------------------------------------------- PII key rotation


async def test_pii_master_key_rotation_rewraps_without_losing_data(any_settings, make_runtime, client_for):
    first_key = SecretStr(new_master_key())
    identity = any_settings.identity.model_copy(update={"pii_master_key": first_key, "pii_master_key_id": "m1"})
    before = any_settings.model_copy(update={"identity": identity})
    async with client_for(before) as client:
        await register(client, phone="+31201234567")
        await register(client, email="second@example.com")
    second_key = SecretStr(new_master_key())
    identity = any_settings.identity.model_copy(
        update={"pii_master_key": second_key, "pii_master_key_id": "m2", "pii_previous_master_keys": {"m1": first_key}}
    )
    during = any_settings.model_copy(update={"identity": identity})
    runtime = await make_runtime(during)
    credentials = identity_bootstrap.build(runtime)  # as `staybook rotate-pii-key` builds them
    assert await privacy.rotate_pii_keys(runtime, credentials, batch_size=1) == 2
    assert await privacy.rotate_pii_keys(runtime, credentials) == 0
    await credentials.close()
    # After the rotation the old key is no longer needed.
    identity = any_settings.identity.model_copy(
        update={"pii_master_key": second_key, "pii_master_key_id": "m2", "pii_previous_master_keys": {}}
    )
    async with client_for(any_settings.model_copy(update={"identity": identity})) as client:
        me = (await client.get("/api/v1/me", headers=auth(await login(client)))).json()
    assert me["phone"] == "+31201234567" and me["email"] == "ana@example.com"


# ---------------------------------------------------------------------------- migration


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_identity_migration_downgrades_and_upgrades(engine, request, tmp_path):
    from staybook import migrate
    from staybook.kernel.settings import Settings

    if engine == "sqlite":
        settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", environment="test")
        migrate.upgrade(settings)
    else:
        import psycopg

        from tests.conftest import PG_ADMIN_URL

        request.getfixturevalue("pg_database_url")
        name = f"staybook_identity_mig_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        settings = Settings(database_url=PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", environment="test")
        request.addfinalizer(lambda: _drop(PG_ADMIN_URL, name))
        migrate.upgrade(settings)
    migrate.downgrade(settings, "identity@base")
    migrate.upgrade(settings)
    migrate.downgrade(settings, "identity@base")


def _drop(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def chain_verdict(status: dict) -> dict:
    """What these tests check of a verification (the anchor's fields are tests/integration/test_audit_anchor.py's)."""
    return {key: status[key] for key in ("valid", "entries", "broken_at")}
