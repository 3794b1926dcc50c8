"""Identity's pure parts: password rules, TOTP and recovery codes, tokens, the PII vault, the audit digest."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from cryptography.exceptions import InvalidTag
from pydantic import SecretStr

from staybook.identity import mfa
from staybook.identity.audit import GENESIS, AuditRecord, entry_digest
from staybook.identity.events import audit_record_for
from staybook.identity.passwords import PasswordHashing, common_passwords, password_problems
from staybook.identity.pii import PiiKeyMissing, PiiVault, new_master_key, normalise_email
from staybook.kernel.errors import Unauthorized
from staybook.kernel.events import EventEnvelope
from staybook.kernel.security import TokenSigner
from staybook.kernel.settings import Settings


def codes(password: str, **kwargs) -> list[str]:
    return [p.code for p in password_problems(password, min_length=10, **kwargs)]


def test_password_rules():
    assert codes("river-otter-lantern") == []
    assert codes("short") == ["too-short"]
    assert "too-common" in codes("Password123")
    assert "too-common" in codes("qwertyuiop")
    assert codes("abababababab") == ["too-simple"]
    assert codes("x" * 129) == ["too-long", "too-simple"]
    assert codes("maria.silva.1990", email="maria.silva@example.com") == ["contains-personal-data"]
    assert codes("my-JohnDoe-pass", name="John Doe") == ["contains-personal-data"]


def test_common_password_list_ships_with_the_package():
    passwords = common_passwords()
    assert len(passwords) > 1000
    assert "password" in passwords and "1234567890" in passwords


def test_argon2id_hash_verify_and_rehash_on_parameter_change():
    cheap = PasswordHashing(time_cost=1, memory_kib=1024, parallelism=1)
    stored = cheap.hash("river-otter-lantern")
    assert stored.startswith("$argon2id$")
    assert cheap.verify(stored, "river-otter-lantern")
    assert not cheap.verify(stored, "river-otter-lanterN")
    assert not cheap.verify(None, "staybook-no-such-account")  # the dummy hash never signs anyone in
    assert not cheap.verify("not-a-hash", "x")
    assert not cheap.needs_rehash(stored)
    stronger = PasswordHashing(time_cost=2, memory_kib=2048, parallelism=1)
    assert stronger.needs_rehash(stored) and stronger.verify(stored, "river-otter-lantern")


def test_totp_accepts_current_codes_once_and_within_drift():
    secret = mfa.new_totp_secret()
    totp = pyotp.TOTP(secret)
    now = 1_800_000_000.0
    step = mfa.matching_step(secret, totp.at(now), last_step=0, now=now)
    assert step == mfa.current_step(now)
    assert mfa.matching_step(secret, totp.at(now), last_step=step, now=now) is None  # replay
    assert mfa.matching_step(secret, totp.at(now - 30), last_step=0, now=now) == step - 1  # clock drift
    assert mfa.matching_step(secret, totp.at(now - 90), last_step=0, now=now) is None
    assert mfa.matching_step(secret, "12345a", last_step=0, now=now) is None
    assert mfa.provisioning_uri(secret, "a@example.com").startswith("otpauth://totp/staybook:a%40example.com?")


def test_recovery_codes_are_distinct_and_normalise():
    generated = mfa.new_recovery_codes(10)
    assert len(set(generated)) == 10
    assert all(len(mfa.normalise_recovery_code(c)) == 10 for c in generated)
    assert mfa.normalise_recovery_code(" ABCD-efgh-JK ") == "abcdefghjk"
    assert not mfa.looks_like_totp(generated[0])


def settings_with(**overrides) -> Settings:
    return Settings(environment="test", **overrides)


def test_tokens_verify_and_reject():
    settings = settings_with()
    signer = TokenSigner(settings)
    user = uuid.uuid4()
    principal = signer.verify(signer.issue(user, "host"))
    assert principal.user_id == user and principal.role == "host"
    with pytest.raises(Unauthorized, match="expired"):
        signer.verify(signer.issue(user, "host", ttl=timedelta(seconds=-5)))
    with pytest.raises(Unauthorized):
        signer.verify(signer.issue(user, "host", extra={"typ": "mfa"}))
    assert signer.decode(signer.issue(user, "host", extra={"typ": "mfa"}), "mfa")["sub"] == str(user)
    other = TokenSigner(settings_with(jwt_keys={"k1": "a-different-secret-0123456789abcdef0123"}))
    with pytest.raises(Unauthorized):
        other.verify(signer.issue(user, "guest"))
    wrong_audience = TokenSigner(settings_with(jwt_audience="elsewhere"))
    with pytest.raises(Unauthorized):
        signer.verify(wrong_audience.issue(user, "guest"))


def test_key_rotation_old_tokens_still_verify():
    old = TokenSigner(settings_with(jwt_keys={"k1": "first-secret-0123456789abcdef0123456789"}))
    new = TokenSigner(
        settings_with(
            jwt_keys={"k1": "first-secret-0123456789abcdef0123456789", "k2": "second-secret-0123456789abcdef012345678"},
            jwt_active_key_id="k2",
        )
    )
    token = old.issue(uuid.uuid4(), "guest")
    assert new.verify(token).role == "guest"
    with pytest.raises(Unauthorized):
        old.verify(new.issue(uuid.uuid4(), "guest"))  # k2 unknown to a process that has not rolled yet


def test_vault_seals_per_owner_and_rewraps():
    first = SecretStr(new_master_key())
    vault = PiiVault(settings_with(identity={"pii_master_key": first.get_secret_value(), "pii_master_key_id": "m1"}))
    owner = uuid.uuid4()
    key_id, wrapped, data_key = vault.new_data_key()
    sealed = vault.seal_fields(data_key, {"phone": "+31201234567"}, owner)
    assert b"+31201234567" not in sealed
    assert vault.open_fields(vault.data_key(key_id, wrapped), sealed, owner) == {"phone": "+31201234567"}
    with pytest.raises(InvalidTag):
        vault.open_fields(data_key, sealed, uuid.uuid4())  # moved to another row: does not open

    rotated = PiiVault(
        settings_with(
            identity={
                "pii_master_key": new_master_key(),
                "pii_master_key_id": "m2",
                "pii_previous_master_keys": {"m1": first.get_secret_value()},
            }
        )
    )
    new_id, new_wrapped = rotated.rewrap(key_id, wrapped)
    assert new_id == "m2" and rotated.data_key(new_id, new_wrapped) == data_key
    with pytest.raises(PiiKeyMissing):
        vault.data_key("m2", new_wrapped)


def test_email_hash_is_case_and_space_insensitive_and_keyed():
    vault = PiiVault(settings_with())
    assert normalise_email("  Ana@Example.COM ") == "ana@example.com"
    assert vault.email_hash("Ana@Example.com") == vault.email_hash(" ana@example.com")
    other = PiiVault(settings_with(identity={"email_hash_key": "another-email-key-0123456789"}))
    assert other.email_hash("ana@example.com") != vault.email_hash("ana@example.com")


def test_audit_digest_chains_and_covers_every_field():
    at = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    record = AuditRecord(
        "auth.login", "user", "success", "u1", uuid.uuid4(), "guest", "203.0.113.9", {"method": "password"}
    )
    digest = entry_digest(GENESIS, 1, at, record)
    assert digest == entry_digest(GENESIS, 1, at, record)
    assert digest != entry_digest(GENESIS, 2, at, record)
    assert digest != entry_digest("1" * 64, 1, at, record)
    changed = AuditRecord(
        "auth.login", "user", "failure", "u1", record.actor_id, "guest", "203.0.113.9", {"method": "password"}
    )
    assert digest != entry_digest(GENESIS, 1, at, changed)


def test_booking_events_are_audited_without_personal_data():
    envelope = EventEnvelope(
        uuid.uuid4(),
        "staybook.booking.booking.cancelled",
        "booking.cancelled",
        datetime.now(UTC),
        {
            "booking": {
                "booking_id": "b1",
                "status": "cancelled",
                "guest_user_id": str(uuid.uuid4()),
                "guest": {"name": "Gina", "email": "gina@example.com"},
                "total": {"amount": 100, "currency": "EUR"},
            },
            "cancelled_by": "guest",
            "refund": {"amount": 100, "currency": "EUR"},
        },
    )
    record = audit_record_for(envelope)
    assert record.resource_type == "booking" and record.resource_id == "b1" and record.result == "success"
    assert record.details["refund"] == {"amount": 100, "currency": "EUR"}
    assert "gina" not in str(record.details).lower()


def test_mfa_step_uses_real_time_by_default():
    assert abs(mfa.current_step() - int(time.time() // 30)) <= 1


@pytest.mark.parametrize("address", ["guest@example.com\n", "guest@example.com\r\n"])
def test_an_address_with_a_trailing_line_break_is_refused_everywhere(address):
    # `$` matches before a final newline: every validator must match the whole value, or the
    # line break reaches a mail header.
    from staybook.booking.schemas import GuestDetails
    from staybook.kernel.contact import is_valid_email, normalise_email

    assert not is_valid_email(address)
    with pytest.raises(ValueError):
        normalise_email(address)
    # Booking schemas strip surrounding whitespace first: what is kept has no line break.
    assert GuestDetails(name="Ada", email=address).email == "guest@example.com"


@pytest.mark.parametrize("address", ["josé@example.com", "ADA@Example.ORG", "a.b+tag@mail.example.co.uk"])
def test_one_email_rule_at_the_edges_and_at_delivery(address):
    """What a booking, a registration and the sender accept is one rule (email-validator)."""
    from staybook.booking.schemas import GuestDetails
    from staybook.identity.schemas import RegisterRequest
    from staybook.kernel.contact import is_valid_email

    booked = GuestDetails(name="Ada", email=address).email
    registered = RegisterRequest(email=address, password="x", name="Ada").email
    assert booked == registered == address.lower()
    assert is_valid_email(booked)


@pytest.mark.parametrize("address", ["ada@localhost", "ada@@example.com", "ada@example..com", "<ada@example.org>"])
def test_an_address_refused_at_one_edge_is_refused_at_every_edge(address):
    from pydantic import ValidationError

    from staybook.booking.schemas import GuestDetails
    from staybook.identity.schemas import RegisterRequest
    from staybook.kernel.contact import is_valid_email

    with pytest.raises(ValidationError):
        GuestDetails(name="Ada", email=address)
    with pytest.raises(ValidationError):
        RegisterRequest(email=address, password="x", name="Ada")
    assert not is_valid_email(address)


@pytest.mark.parametrize("phone", ["+1\r\n<script>", "+1 <b>", "0612345678", "+999 123"])
def test_a_guest_phone_that_is_not_a_number_is_refused(phone):
    from pydantic import ValidationError

    from staybook.booking.schemas import GuestDetails

    with pytest.raises(ValidationError) as refused:
        GuestDetails(name="Ada", email="ada@example.org", phone=phone)
    assert refused.value.errors()[0]["loc"] == ("phone",)


def test_a_guest_phone_is_stored_in_e164():
    from staybook.booking.schemas import GuestDetails

    assert GuestDetails(name="Ada", email="ada@example.org", phone="+31 20 123 4567").phone == "+31201234567"
