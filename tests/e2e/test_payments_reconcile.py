"""`staybook payments reconcile` agrees with the provider's ledger, and notices when it does not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import update

from staybook.payments.models import SandboxCharge
from tests.bookings import hold_body, seed_room_type
from tests.conftest import bearer

pytestmark = pytest.mark.e2e


def reconcile(settings, *options: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "STAYBOOK_DATABASE_URL": settings.database_url, "STAYBOOK_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-c", "from staybook.cli import main; main()", "payments", "reconcile", *options]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


async def test_reconcile_command(pg_settings, client_for):
    settings = pg_settings.model_copy(
        update={"payments": pg_settings.payments.model_copy(update={"sandbox_instant": True})}
    )
    headers = bearer(settings, "guest")
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        room = await seed_room_type(runtime, total=3)
        for token in ("tok_success", "tok_decline", "tok_success"):
            held = await client.post(
                "/api/v1/bookings",
                json=hold_body(room["room_type_id"]),
                headers=headers | {"Idempotency-Key": token + uuid.uuid4().hex},
            )
            await client.post(
                f"/api/v1/bookings/{held.json()['id']}/payment",
                json={"payment_method": token},
                headers=headers | {"Idempotency-Key": uuid.uuid4().hex},
            )
        balanced = reconcile(settings)
        assert balanced.returncode == 0, balanced.stderr
        report = json.loads(balanced.stdout)
        assert report["balanced"] and report["captured"] == {"staybook": 40_000, "provider": 40_000}
        later = json.loads(reconcile(settings, "--since", "2999-01-01").stdout)  # nothing created since
        assert (later["payments"], later["provider_charges"], later["balanced"]) == (0, 0, True)

        async with runtime.db.unit_of_work() as uow:  # the bank refunds the charges behind staybook's back
            refunded = (
                (
                    await uow.session.execute(
                        update(SandboxCharge)
                        .where(SandboxCharge.status == "captured")
                        .values(status="refunded", refunded_amount=SandboxCharge.captured_amount)
                        .returning(SandboxCharge.reference)
                    )
                )
                .scalars()
                .all()
            )
    unbalanced = reconcile(settings)
    assert unbalanced.returncode == 1
    assert {m["reference"] for m in json.loads(unbalanced.stdout)["mismatches"]} == set(refunded)
