"""The identity context's subscriptions: the audit log records what bookings and payments did."""

from __future__ import annotations

from collections.abc import Sequence

from staybook.identity import audit
from staybook.identity.events import audit_record_for
from staybook.kernel.consumers import Subscription
from staybook.kernel.db import UnitOfWork
from staybook.kernel.events import EventEnvelope


async def record_activity(envelope: EventEnvelope, uow: UnitOfWork, deps: None) -> None:
    await audit.append(uow.session, audit_record_for(envelope))


async def record_activities(envelopes: Sequence[EventEnvelope], uow: UnitOfWork, deps: None) -> None:
    """A batch of events as consecutive audit entries: one chain lock and tail read per batch."""
    await audit.append_many(uow.session, [audit_record_for(envelope) for envelope in envelopes])


SUBSCRIPTIONS = [
    Subscription("identity.audit-bookings", "staybook.booking.>", record_activity, batch_handler=record_activities),
    Subscription("identity.audit-payments", "staybook.payments.>", record_activity, batch_handler=record_activities),
]
