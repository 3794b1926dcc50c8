"""/metrics carries what the alerts and dashboards in deploy/ read: bookings by outcome and value,
payments by result, sign-ins and registrations, refused requests, search latency, the pool, the
outbox's age, consumers' pending messages and dead letters. Counters are process-wide, so each
check is a difference across the traffic this test drives."""

from __future__ import annotations

import uuid

from prometheus_client.parser import text_string_to_metric_families

from staybook.kernel.worker import KERNEL_JOBS
from tests.bookings import START, hold_body, seed_room_type
from tests.integration.test_identity_flows import auth, fast_hashing, login, register


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_the_series_the_alerts_read_move_with_traffic(production_settings, client_for):
    settings = fast_hashing(production_settings)
    identity = settings.identity.model_copy(update={"login_per_account": (3, 60, 0)})
    settings = settings.model_copy(
        update={
            "identity": identity,
            "run_worker_in_process": True,
            "payments": settings.payments.model_copy(update={"sandbox_instant": True}),
        }
    )
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        before = samples((await client.get("/metrics")).text)

        await register(client, email="metrics@example.org")
        tokens = await login(client, email="metrics@example.org")
        wrong = {"email": "metrics@example.org", "password": "nope-nope-1"}
        assert (await client.post("/api/v1/auth/login", json=wrong)).status_code == 401
        for _ in range(3):  # the account's limit (3 per minute) refuses the rest
            await client.post("/api/v1/auth/login", json=wrong)
        room = await seed_room_type(runtime, total=1)
        held = await client.post(
            "/api/v1/bookings",
            json=hold_body(room["room_type_id"]),
            headers=auth(tokens) | {"Idempotency-Key": uuid.uuid4().hex},
        )
        assert held.status_code == 201, held.text
        paid = await client.post(
            f"/api/v1/bookings/{held.json()['id']}/payment",
            json={"payment_method": "tok_success"},
            headers=auth(tokens) | {"Idempotency-Key": uuid.uuid4().hex},
        )
        assert paid.status_code == 200, paid.text
        check_out = START.replace(day=START.day + 2)
        search = await client.get(f"/api/v1/search?city=Lisbon&check_in={START}&check_out={check_out}&guests=2")
        assert search.status_code in (200, 422), search.text
        for job in KERNEL_JOBS:
            if job.name in ("outbox.backlog", "consumers.metrics"):
                await job.run(runtime, job.deps)
        after = samples((await client.get("/metrics")).text)

    def moved(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("staybook_bookings_total", outcome="held") == 1
    assert moved("staybook_bookings_total", outcome="confirmed") == 1
    assert moved("staybook_booking_value_minor_total", currency="EUR") == 20_000
    assert moved("staybook_payments_total", result="succeeded") == 1
    assert moved("staybook_registrations_total", result="success") == 1
    assert moved("staybook_logins_total", result="success") == 1
    assert moved("staybook_logins_total", result="failure") >= 1
    assert moved("staybook_rate_limited_total", rule="identity.login.account") >= 1
    assert moved("staybook_search_duration_seconds_count") >= 1
    assert ("staybook_db_pool_size", ()) in after and ("staybook_db_pool_waiting", ()) in after
    assert ("staybook_db_pool_connections", (("state", "in_use"),)) in after
    assert ("staybook_outbox_oldest_age_seconds", ()) in after
    assert any(name == "staybook_consumer_pending" for name, _ in after)
    assert any(name == "staybook_dead_letters" for name, _ in after)
