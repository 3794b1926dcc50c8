"""The booking context's subscriptions (it owns no process resources: its handlers get no deps)."""

from __future__ import annotations

from staybook.booking import service
from staybook.kernel.consumers import Subscription
from staybook.kernel.db import UnitOfWork
from staybook.kernel.events import EventEnvelope
from staybook.kernel.orm import as_uuid


async def on_user_erased(envelope: EventEnvelope, uow: UnitOfWork, deps: None) -> None:
    await service.erase_guest(uow, as_uuid(envelope.payload["user_id"]))


SUBSCRIPTIONS = [Subscription("booking.user.erased", "staybook.identity.user.erased", on_user_erased)]
