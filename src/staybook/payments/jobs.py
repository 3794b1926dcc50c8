"""The payments context's periodic jobs: the sandbox's webhook deliveries."""

from __future__ import annotations

from staybook.kernel.runtime import PeriodicJob, Runtime
from staybook.payments.sandbox import SandboxProvider
from staybook.payments.service import PaymentsDeps


async def retry_sandbox_webhooks(runtime: Runtime, deps: PaymentsDeps) -> None:
    active = deps.provider
    if isinstance(active, SandboxProvider) and active.webhooks:
        await active.deliver_pending()


# The worker delivers the sandbox's webhooks: often, as an API process no longer posts them itself.
JOBS = [PeriodicJob("payments.sandbox-webhooks", 0.25, retry_sandbox_webhooks)]
