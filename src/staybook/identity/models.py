"""Tables of the identity context.

Personal data lives encrypted: `users.pii` is one AES-GCM ciphertext (email,
phone, date of birth, address) under a per-user data key, stored wrapped by
the master key `pii_key_id` names. Lookups by email use `email_hash`, an HMAC
of the normalised address, so neither the database nor its backups hold a
plaintext address to scan.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from staybook.kernel.orm import Base, UTCDateTime, utcnow

# BIGINT on PostgreSQL, INTEGER on SQLite (where only INTEGER PRIMARY KEY auto-increments).
SequenceNumber = BigInteger().with_variant(Integer(), "sqlite")


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Legacy: names are sealed in `pii` now; this column is NULL for every row written since.
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    role: Mapped[str] = mapped_column(String(16), index=True)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | erased
    locale: Mapped[str] = mapped_column(String(35), default="en")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    region: Mapped[str] = mapped_column(String(16), default="eu")
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    pii_key_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    pii_wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    pii: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # TOTP secret sealed with the same data key; pending until confirmed with a first code.
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Last accepted TOTP time step: a code is accepted once (no replay within its 30 s).
    totp_last_step: Mapped[int] = mapped_column(BigInteger, default=0)
    # jti of the one open MFA challenge: a challenge signs in once, and a newer sign-in replaces it.
    mfa_challenge_jti: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Claim `ver` of every access token issued; raised when the user's rights are revoked (role
    # change, erasure, password change, signing out everywhere), which refuses every older token.
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Set by an admin: no sign-in, no refresh, every token refused until unlocked.
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RefreshToken(Base):
    """One opaque refresh token, stored as its SHA-256. Tokens of one sign-in share a family.

    Using a token spends it (`used_at`) and issues its successor in the same family;
    presenting a spent token again means it was copied, so the whole family is revoked.
    """

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    family_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RecoveryCode(Base):
    """A one-time MFA recovery code, stored as a keyed hash; `used_at` spends it."""

    __tablename__ = "mfa_recovery_codes"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AuditEntry(Base):
    """Who did what to which resource, from where, with what result. Append-only.

    `entry_hash` = SHA-256 over the previous entry's hash and this entry's fields,
    so editing or deleting any entry breaks every hash after it. Entries hold ids,
    never names or addresses: erasing a user leaves the chain intact.
    """

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(SequenceNumber, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    actor_role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ip: Mapped[str | None] = mapped_column(String(45), nullable=True)
    result: Mapped[str] = mapped_column(String(16))  # success | failure | denied
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_audit_log_resource", "resource_type", "resource_id"),)


class RegionalPersonalData(Base):
    """A user's sealed record in their region's own database (`settings.regions`, identity/residency.py).

    The columns of `users` that hold it stay NULL for such a user: the home database, and every
    standby of it in another region, never sees the ciphertext nor the key that opens it. No
    foreign key: the user row is in another database.
    """

    __tablename__ = "user_personal_data"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    pii_key_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    pii_wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    pii: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
