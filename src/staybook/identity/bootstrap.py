"""Builds the identity context's parts for one process, and its subscriptions.

`lifespan(runtime)` yields `Credentials` (the PII vault, the password hasher, the regional
stores); routes read them through `IdentityDep`, and contexts above identity (notifications)
take them in their own lifespans. Every process also hears of token revocations at once, and the
audit log records what bookings and payments did.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Annotated

from fastapi import Depends

from staybook.identity import audit, residency, service
from staybook.identity.events import UserTokensRevoked, audit_record_for
from staybook.identity.passwords import PasswordHashing
from staybook.identity.pii import PiiVault
from staybook.identity.service import Credentials
from staybook.kernel.consumers import ReplicaSubscription, Subscription
from staybook.kernel.db import UnitOfWork
from staybook.kernel.events import EventEnvelope
from staybook.kernel.runtime import Runtime, context_dependency
from staybook.kernel.security import TokenVersions

CONTEXT = "identity"
IdentityDep = Annotated[Credentials, Depends(context_dependency(CONTEXT))]


def build(runtime: Runtime) -> Credentials:
    """New credentials for a runtime, with its regional stores installed on its engines before any
    user is loaded through them; also for processes that enter no lifespan (`staybook seed`, key
    rotation, tests), which `close()` them when done."""
    settings = runtime.settings.identity
    return Credentials(
        PiiVault(runtime.settings),
        PasswordHashing(settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism),
        residency.install(runtime.db, residency.RegionalStores(runtime.settings)),
    )


def identity_deps(runtime: Runtime) -> Credentials:
    """This process's credentials, for the lifespans of contexts above identity (entered after it)."""
    return runtime.context_deps[CONTEXT]


@contextlib.asynccontextmanager
async def lifespan(runtime: Runtime) -> AsyncIterator[Credentials]:
    # Built at start-up so the first sign-in does not pay for the dummy hash.
    credentials = build(runtime)
    runtime.token_versions.loader = lambda user_id: service.stored_token_version(runtime, user_id)
    await runtime.consumers.start(
        [
            ReplicaSubscription(
                "identity.token-versions", UserTokensRevoked.subject(), on_tokens_revoked, deps=runtime.token_versions
            )
        ]
    )
    try:
        yield credentials
    finally:
        await credentials.close()


async def on_tokens_revoked(envelope: EventEnvelope, versions: TokenVersions) -> None:
    """Every process stops trusting its cached token version of the user at once."""
    payload = envelope.payload
    versions.remember(uuid.UUID(str(payload["user_id"])), int(payload["token_version"]))


async def record_activity(envelope: EventEnvelope, uow: UnitOfWork, deps: Credentials) -> None:
    await audit.append(uow.session, audit_record_for(envelope))


async def record_activities(envelopes: Sequence[EventEnvelope], uow: UnitOfWork, deps: Credentials) -> None:
    """A batch of events as consecutive audit entries: one chain lock and tail read per batch."""
    await audit.append_many(uow.session, [audit_record_for(envelope) for envelope in envelopes])


SUBSCRIPTIONS = [
    Subscription("identity.audit-bookings", "staybook.booking.>", record_activity, batch_handler=record_activities),
    Subscription("identity.audit-payments", "staybook.payments.>", record_activity, batch_handler=record_activities),
]
