"""Dead letters of durable consumers, listed and replayed by an admin through /api/v1/admin.

The failure is a real one of a real consumer: the photo-variants consumer cannot find the
original it was told about (the media store lost it), retries, and gives up; the admin's replay
fails again while the file is missing, and handles the event once it is back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import uuid

import pytest
from PIL import Image
from sqlalchemy import select

from staybook.kernel.models import DeadLetter, OutboxMessage
from staybook.kernel.worker import Worker
from tests.conftest import bearer
from tests.integration.test_catalog_api import listed

pytestmark = pytest.mark.integration
CONSUMER = "catalog.photo-variants"


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (200, 90, 40)).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


async def _eventually(check, seconds: float = 30.0):
    for _ in range(int(seconds / 0.1)):
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached")


@pytest.fixture(params=["postgres+nats", "sqlite+in-process"])
def settings(request, tmp_path):
    base = request.getfixturevalue("production_settings" if request.param == "postgres+nats" else "sqlite_settings")
    return base.model_copy(
        update={
            "consumer_max_deliver": 2,
            "consumer_backoff_seconds": 0.05,
            "catalog": base.catalog.model_copy(update={"media_dir": tmp_path / "media"}),
        }
    )


async def test_a_dead_letter_is_listed_fails_again_and_replays_once_its_cause_is_fixed(settings, client_for):
    host, admin = bearer(settings, "host"), bearer(settings, "admin")
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        property_id, _ = await listed(client, host)
        uploaded = await client.post(
            f"/api/v1/properties/{property_id}/photos", files={"file": ("a.jpg", _jpeg(), "image/jpeg")}, headers=host
        )
        assert uploaded.status_code == 202, uploaded.text
        async with runtime.db.session() as session:
            payload = (
                await session.scalars(select(OutboxMessage.payload).where(OutboxMessage.event_type == "photo.uploaded"))
            ).one()
        store = runtime.context_deps["catalog"].media
        original = await store.get(payload["original_key"])
        await store.delete(payload["original_key"])  # lost before the worker got to it

        worker = Worker(runtime)
        await worker.start(jobs=False)
        try:

            async def dead_letters():
                async with runtime.db.session() as session:
                    return (await session.scalars(select(DeadLetter))).all()

            [dead] = await _eventually(dead_letters)
        finally:
            await worker.stop()
        assert dead.consumer == CONSUMER and dead.attempts == 2 and "No media" in dead.error

        assert (await client.get("/api/v1/admin/dead-letters", headers=host)).status_code == 403
        assert (await client.post(f"/api/v1/admin/dead-letters/{dead.id}/replay", headers=host)).status_code == 403
        consumers = {c["consumer"]: c for c in (await client.get("/api/v1/admin/consumers", headers=admin)).json()}
        # Every durable consumer of the process is there, with or without letters.
        assert {"identity.audit-bookings", "notifications.booking.confirmed", CONSUMER} <= consumers.keys()
        assert consumers[CONSUMER]["waiting"] == 1 and consumers[CONSUMER]["subject"].endswith("photo.uploaded")
        listed_letters = await client.get("/api/v1/admin/dead-letters", params={"consumer": CONSUMER}, headers=admin)
        [item] = listed_letters.json()["items"]
        assert item["id"] == str(dead.id) and item["event_type"] == "photo.uploaded"
        assert item["envelope"]["payload"]["photo_id"] == payload["photo_id"]

        still_missing = await client.post(f"/api/v1/admin/dead-letters/{dead.id}/replay", headers=admin)
        assert still_missing.status_code == 409, still_missing.text
        assert still_missing.headers["content-type"] == "application/problem+json"
        assert still_missing.json()["type"].endswith("/replay-failed") and "No media" in still_missing.json()["detail"]
        after_failure = (await client.get(f"/api/v1/admin/dead-letters/{dead.id}", headers=admin)).json()
        assert after_failure["attempts"] == 3 and after_failure["replayed_at"] is None

        await store.put(payload["original_key"], original, "image/jpeg")  # the cause is fixed
        replayed = await client.post(f"/api/v1/admin/dead-letters/{dead.id}/replay", headers=admin)
        assert replayed.status_code == 200, replayed.text
        assert replayed.json()["handled"] is True and replayed.json()["dead_letter"]["replayed_at"]
        photos = (await client.get(f"/api/v1/properties/{property_id}/photos")).json()
        assert photos[0]["status"] == "ready" and {v["name"] for v in photos[0]["variants"]} >= {"thumb"}

        again = await client.post(f"/api/v1/admin/dead-letters/{dead.id}/replay", headers=admin)
        missing = await client.post(f"/api/v1/admin/dead-letters/{uuid.uuid4()}/replay", headers=admin)
        waiting = (await client.get("/api/v1/admin/dead-letters", headers=admin)).json()["items"]
        done = (await client.get("/api/v1/admin/dead-letters", params={"state": "replayed"}, headers=admin)).json()
        bad_state = await client.get("/api/v1/admin/dead-letters", params={"state": "lost"}, headers=admin)
    assert again.status_code == 409 and "replayed at" in again.json()["detail"]
    assert missing.status_code == 404
    assert waiting == [] and [d["id"] for d in done["items"]] == [str(dead.id)]
    assert bad_state.status_code == 422 and bad_state.json()["errors"][0]["field"] == "query.state"


async def test_two_admins_replaying_one_letter_at_once_handle_its_event_once(pg_settings, client_for, tmp_path):
    """The consumer's inbox row decides: one replay handles the event, the other finds it handled."""
    settings = pg_settings.model_copy(
        update={"catalog": pg_settings.catalog.model_copy(update={"media_dir": tmp_path / "media"})}
    )
    admin = bearer(settings, "admin")
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        seen: list[uuid.UUID] = []
        subscription = next(s for s in runtime.wiring.subscriptions if s.consumer == "identity.audit-bookings")
        envelope = {
            "id": str(uuid.uuid4()),
            "subject": "staybook.booking.booking.expired",
            "type": "booking.expired",
            "occurred_at": "2026-12-01T10:00:00+00:00",
            "payload": {"booking": {"id": str(uuid.uuid4()), "guest_user_id": str(uuid.uuid4())}},
            "headers": {},
        }
        original_handler = subscription.batch_handler

        async def slow_batch(envelopes, uow, deps):  # holds its transaction open so the two replays overlap
            seen.extend(e.id for e in envelopes)
            await asyncio.sleep(0.3)
            await original_handler(envelopes, uow, deps)

        runtime.wiring.subscriptions[runtime.wiring.subscriptions.index(subscription)] = dataclasses.replace(
            subscription, batch_handler=slow_batch
        )
        dead_id = uuid.uuid4()
        async with runtime.db.unit_of_work() as uow:
            uow.session.add(
                DeadLetter(
                    id=dead_id, consumer=subscription.consumer, event_id=uuid.UUID(envelope["id"]),
                    subject=envelope["subject"], envelope=envelope, error="OperationalError: connection lost",
                    attempts=5,
                )
            )  # fmt: skip
        first, second = await asyncio.gather(
            client.post(f"/api/v1/admin/dead-letters/{dead_id}/replay", headers=admin),
            client.post(f"/api/v1/admin/dead-letters/{dead_id}/replay", headers=admin),
        )
        chain = (await client.get("/api/v1/admin/audit-log/verify", headers=admin)).json()
        entries = await client.get("/api/v1/admin/audit-log", headers=admin, params={"action": "booking.expired"})
    answers = sorted((r.status_code, r.json().get("handled")) for r in (first, second))
    # The second either found the event in the inbox (handled False) or the letter marked replayed (409).
    assert answers in ([(200, False), (200, True)], [(200, True), (409, None)]), (first.text, second.text)
    assert len(seen) == 1 and len(entries.json()["items"]) == 1
    assert chain["valid"] is True
