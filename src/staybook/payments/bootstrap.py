"""Builds the payments context's parts for one process: the provider and its circuit breaker.

`lifespan(runtime)` yields `PaymentsDeps`; routes read it through `PaymentsDep`, the jobs get it
as their last argument, and booking, above payments, takes it in its own lifespan.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends

from staybook.kernel.db import Database
from staybook.kernel.runtime import Runtime, context_dependency
from staybook.kernel.settings import Settings
from staybook.payments.provider import PaymentProvider, ProviderBreaker
from staybook.payments.sandbox import SandboxProvider
from staybook.payments.service import PaymentsDeps
from staybook.payments.stripe import StripeProvider

CONTEXT = "payments"
PaymentsDep = Annotated[PaymentsDeps, Depends(context_dependency(CONTEXT))]


# The provider modules, by the name `payments.provider` gives; each is built from (db, settings).
PROVIDERS: dict[str, Callable[[Database, Settings], PaymentProvider]] = {
    SandboxProvider.name: SandboxProvider,
    StripeProvider.name: StripeProvider,
}


def build(runtime: Runtime) -> PaymentsDeps:
    """The process's payments deps: the provider given to `create_app`, else the one settings name.
    Also for processes that enter no lifespan (tests, one-off commands)."""
    settings = runtime.settings.payments
    provider = runtime.adapters.payment_provider
    if provider is None:
        # The settings admit only the names PROVIDERS has.
        provider = PROVIDERS[settings.provider](runtime.db, runtime.settings)
    return PaymentsDeps(provider, ProviderBreaker(settings.breaker_failures, settings.breaker_open_seconds))


def payments_deps(runtime: Runtime) -> PaymentsDeps:
    """This process's payments deps, for the lifespans of contexts above payments (entered after it)."""
    return runtime.context_deps[CONTEXT]


@contextlib.asynccontextmanager
async def lifespan(runtime: Runtime) -> AsyncIterator[PaymentsDeps]:
    """Creates the provider for this process (the adapter given, or the configured one) and closes it."""
    deps = build(runtime)
    try:
        yield deps
    finally:
        close = getattr(deps.provider, "close", None)
        if close is not None:
            await close()
