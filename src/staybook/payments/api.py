"""HTTP routes of the payments context: the provider's webhook receiver."""

from fastapi import APIRouter, Depends, Request

from staybook.kernel.runtime import Runtime, get_runtime
from staybook.payments import service

router = APIRouter(tags=["payments"])


@router.post("/payments/webhooks/{provider}", summary="Receive a signed payment provider webhook")
async def receive_webhook(provider: str, request: Request, runtime: Runtime = Depends(get_runtime)) -> dict:
    """Verifies the signature and timestamp, de-duplicates by event id, applies the event."""
    body = await request.body()
    outcome = await service.handle_webhook(runtime, provider, body, request.headers)
    return {"received": True, "outcome": outcome}
