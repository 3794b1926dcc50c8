"""HTTP routes of the payments context: the provider's webhook receiver."""

from fastapi import APIRouter, Depends, Request

from staybook.kernel.errors import TooManyRequests
from staybook.kernel.gateway import client_ip
from staybook.kernel.metrics import RATE_LIMITED
from staybook.kernel.ratelimit import RateLimitRule
from staybook.kernel.runtime import Runtime, get_runtime
from staybook.payments import service
from staybook.payments.bootstrap import PaymentsDep

router = APIRouter(tags=["payments"])


@router.post(
    "/payments/webhooks/{provider}",
    summary="Receive a signed payment provider webhook",
    responses={400: {"description": "Bad or stale signature"}, 429: {"description": "Too many deliveries"}},
)
async def receive_webhook(
    provider: str, request: Request, deps: PaymentsDep, runtime: Runtime = Depends(get_runtime)
) -> dict:
    """Verifies the signature and timestamp, de-duplicates by event id, applies the event.

    Rate-limited per provider and source address, before the body is read.
    """
    settings = runtime.settings.payments
    rule = RateLimitRule(
        "payments.webhook", settings.webhook_rate_limit_requests, settings.webhook_rate_limit_window_seconds
    )
    decision = await runtime.rate_limiter.hit(rule, f"{provider[:40]}:{client_ip(request)}")
    if not decision.allowed:
        RATE_LIMITED.labels(rule.name).inc()
        raise TooManyRequests(decision.retry_after_seconds)
    body = await request.body()
    outcome = await service.handle_webhook(runtime, deps, provider, body, request.headers)
    return {"received": True, "outcome": outcome}
