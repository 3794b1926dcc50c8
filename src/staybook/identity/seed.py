"""Demo data: the guest, host and admin accounts with published passwords (printed by `staybook demo`,
refused by `staybook check` in production)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from staybook.identity.bootstrap import build
from staybook.identity.events import (
    UserRegistered,
)
from staybook.identity.models import User
from staybook.identity.passwords import PasswordHashing
from staybook.identity.pii import PiiVault
from staybook.identity.service import Credentials, seal_pii
from staybook.kernel.orm import new_id, utcnow
from staybook.kernel.runtime import Runtime
from staybook.kernel.settings import Settings

# ---------------------------------------------------------------------------- demo data

DEMO_ACCOUNTS = (
    ("guest", "guest@staybook.demo", "Dana Guest", "demo-guest-pass-42"),
    ("host", "host@staybook.demo", "Hugo Host", "demo-host-pass-42"),
    ("admin", "admin@staybook.demo", "Ada Admin", "demo-admin-pass-42"),
)


async def seed_demo(runtime: Runtime, *, properties: int, seed: int) -> dict:
    """A demo guest, host and admin with known passwords (printed by `staybook demo`)."""
    creds = build(runtime)  # `staybook seed` enters no lifespan
    try:
        ids = await _seed_accounts(runtime, creds)
    finally:
        await creds.close()
    return {
        "accounts": [
            {"role": role, "email": email, "password": password} for role, email, _, password in DEMO_ACCOUNTS
        ],
        "host_user_id": str(ids["host"]),
    }


async def _seed_accounts(runtime: Runtime, creds: Credentials) -> dict[str, uuid.UUID]:
    ids: dict[str, uuid.UUID] = {}
    async with runtime.db.unit_of_work() as uow:
        for role, email, name, password in DEMO_ACCOUNTS:
            email_hash = creds.vault.email_hash(email)
            existing = await uow.session.scalar(select(User).where(User.email_hash == email_hash))
            if existing is not None:
                ids[role] = existing.id
                continue
            now = utcnow()
            user = User(
                id=new_id(),
                email_hash=email_hash,
                name=None,
                role=role,
                status="active",
                locale="en",
                timezone="Europe/Amsterdam",
                region=runtime.settings.identity.default_region,
                password_hash=creds.passwords.hash(password),
                totp_enabled=False,
                totp_last_step=0,
                created_at=now,
                updated_at=now,
            )
            seal_pii(creds, user, {"email": email, "name": name, "phone": None})
            uow.session.add(user)
            ids[role] = user.id
            uow.emit(
                UserRegistered(
                    user_id=user.id, role=role, locale=user.locale, timezone=user.timezone, region=user.region
                )
            )
    return ids


async def demo_accounts_in_use(session: AsyncSession, settings: Settings) -> list[str]:
    """The demo accounts that still sign in with their published password (`staybook check` fails on
    them in production)."""
    vault = PiiVault(settings)
    hashing = PasswordHashing(
        settings.identity.argon2_time_cost, settings.identity.argon2_memory_kib, settings.identity.argon2_parallelism
    )
    published = {vault.email_hash(email): (email, password) for _, email, _, password in DEMO_ACCOUNTS}
    rows = await session.execute(
        select(User.email_hash, User.password_hash).where(User.email_hash.in_(published), User.status == "active")
    )
    return sorted(
        published[email_hash][0] for email_hash, stored in rows if hashing.verify(stored, published[email_hash][1])
    )


async def demo_host_id(runtime: Runtime) -> uuid.UUID | None:
    """The demo host's user id (the catalog seeder gives it the demo properties), or None before seeding."""
    email_hash = PiiVault(runtime.settings).email_hash(DEMO_ACCOUNTS[1][1])
    async with runtime.db.session() as session:
        return await session.scalar(select(User.id).where(User.email_hash == email_hash, User.status == "active"))
