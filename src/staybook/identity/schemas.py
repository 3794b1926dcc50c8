"""Request and response models of the identity context."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Literal
from zoneinfo import available_timezones

from pydantic import BaseModel, Field, field_validator

from staybook.kernel.contact import EmailAddress, PhoneNumber
from staybook.kernel.schemas import Schema, examples

_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_TIMEZONES = frozenset(available_timezones())


def validate_timezone(value: str | None) -> str | None:
    if value is not None and value not in _TIMEZONES:
        raise ValueError("not an IANA time zone, e.g. Europe/Amsterdam")
    return value


def validate_locale(value: str | None) -> str | None:
    if value is not None and not _LOCALE.fullmatch(value):
        raise ValueError("not a BCP 47 language tag, e.g. en or pt-BR")
    return value


def validate_birth_date(value: date | None) -> date | None:
    if value is not None and not (date(1900, 1, 1) <= value <= date.today()):
        raise ValueError("date of birth must be between 1900-01-01 and today")
    return value


class Address(Schema):
    line1: str = Field(..., min_length=1, max_length=200)
    line2: str | None = Field(None, max_length=200)
    city: str = Field(..., min_length=1, max_length=100)
    postal_code: str | None = Field(None, max_length=20)
    country: str = Field(..., pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")


class RegisterRequest(Schema):
    model_config = examples(
        {"email": "mia.rossi@example.com", "password": "correct horse battery staple", "name": "Mia Rossi"},
        {"email": "hugo.host@example.com", "password": "a long and unguessable one", "name": "Hugo", "role": "host"},
    )

    email: EmailAddress = Field(..., min_length=3, max_length=254)
    # The rules (length, common list) are checked by the service so each gets its own message.
    password: str = Field(..., min_length=1, max_length=1024)
    name: str = Field(..., min_length=1, max_length=200)
    role: Literal["guest", "host"] = "guest"
    locale: str | None = Field(None, max_length=35)
    timezone: str | None = Field(None, max_length=64)
    region: str | None = Field(None, max_length=16)
    phone: PhoneNumber | None = Field(None, max_length=32)

    _tz = field_validator("timezone")(validate_timezone)
    _locale = field_validator("locale")(validate_locale)


class LoginRequest(Schema):
    # The demo's published guest account (`staybook demo` prints them all).
    model_config = examples({"email": "guest@staybook.demo", "password": "demo-guest-pass-42"})

    email: str = Field(..., min_length=1, max_length=254)
    password: str = Field(..., min_length=1, max_length=1024)


class MfaVerifyRequest(Schema):
    mfa_token: str = Field(..., min_length=1, max_length=2048)
    code: str = Field(..., min_length=6, max_length=20, description="A 6-digit TOTP code or a recovery code")


class RefreshRequest(Schema):
    refresh_token: str = Field(..., min_length=1, max_length=512)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class MfaChallenge(BaseModel):
    mfa_required: Literal[True] = True
    mfa_token: str


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    name: str
    role: str
    locale: str
    timezone: str
    region: str
    phone: str | None = None
    date_of_birth: date | None = None
    address: Address | None = None
    mfa_enabled: bool
    created_at: datetime


class AdminUserOut(BaseModel):
    id: uuid.UUID
    email: str
    name: str
    role: str
    status: str
    region: str
    mfa_enabled: bool
    locked_at: datetime | None = None
    created_at: datetime


class ProfileUpdate(Schema):
    name: str | None = Field(None, min_length=1, max_length=200)
    locale: str | None = Field(None, max_length=35)
    timezone: str | None = Field(None, max_length=64)
    region: str | None = Field(None, max_length=16)
    phone: PhoneNumber | None = Field(None, max_length=32)
    date_of_birth: date | None = None
    address: Address | None = None

    _tz = field_validator("timezone")(validate_timezone)
    _locale = field_validator("locale")(validate_locale)
    _dob = field_validator("date_of_birth")(validate_birth_date)


class PasswordChange(Schema):
    current_password: str = Field(..., min_length=1, max_length=1024)
    new_password: str = Field(..., min_length=1, max_length=1024)


class TotpSetup(BaseModel):
    secret: str
    otpauth_uri: str


class TotpCode(Schema):
    code: str = Field(..., min_length=6, max_length=20)


class RecoveryCodes(BaseModel):
    recovery_codes: list[str]


class RoleChange(Schema):
    role: Literal["guest", "host", "admin"]


class AuditEntryOut(BaseModel):
    seq: int
    occurred_at: datetime
    actor_id: uuid.UUID | None
    actor_role: str | None
    action: str
    resource_type: str
    resource_id: str | None
    ip: str | None
    result: str
    details: dict
    entry_hash: str


class AuditChainStatus(BaseModel):
    valid: bool
    entries: int
    broken_at: int | None
    # The newest signed head kept outside the database; entries up to it must all be there.
    anchored_seq: int | None = None
    anchored_at: str | None = None
    problem: str | None = None
