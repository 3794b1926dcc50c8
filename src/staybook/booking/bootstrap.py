"""Builds the booking context's parts for one process, and its subscriptions.

`lifespan(runtime)` yields `BookingDeps`: the payments deps the saga calls (payments sits below
booking, so its lifespan ran first). It also adds the saga to the payments' settlement listeners,
so a webhook continues a saga that waits for the provider. Routes read the deps through
`BookingDep`, the jobs get them as their last argument.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends

from staybook.booking import saga, service
from staybook.booking.ports import BookingDeps, no_checkpoint
from staybook.kernel.consumers import Subscription
from staybook.kernel.db import UnitOfWork
from staybook.kernel.events import EventEnvelope
from staybook.kernel.orm import as_uuid
from staybook.kernel.runtime import Runtime, context_dependency
from staybook.payments.bootstrap import payments_deps

BookingDep = Annotated[BookingDeps, Depends(context_dependency("booking"))]


@contextlib.asynccontextmanager
async def lifespan(runtime: Runtime) -> AsyncIterator[BookingDeps]:
    deps = BookingDeps(payments_deps(runtime), runtime.adapters.saga_checkpoint or no_checkpoint)
    listener = functools.partial(on_payment_settled, deps=deps)
    deps.payments.settlement_listeners.append(listener)
    try:
        yield deps
    finally:
        deps.payments.settlement_listeners.remove(listener)


async def on_payment_settled(runtime: Runtime, booking_id: uuid.UUID, *, deps: BookingDeps) -> None:
    await saga.on_payment_settled(runtime, deps, booking_id)


async def on_user_erased(envelope: EventEnvelope, uow: UnitOfWork, deps: BookingDeps) -> None:
    await service.erase_guest(uow, as_uuid(envelope.payload["user_id"]))


SUBSCRIPTIONS = [Subscription("booking.user.erased", "staybook.identity.user.erased", on_user_erased)]
