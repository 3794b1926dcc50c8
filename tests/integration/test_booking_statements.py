"""The statements a booking costs: hold and pay+confirm each stay within a budget of SQL statements
(docs/booking-saga.md, "Performance"). A change that adds a read or a flush to the hot path fails here,
and the statements are printed (`pytest -s`) so the budget can be read, not guessed."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import event

from tests.bookings import hold_body, seed_room_type
from tests.conftest import bearer

# hold: claim the key; room type, nightly prices; booking, saga, history; the hold; answer; outbox.
HOLD_BUDGET = 10
# pay: claim (2); booking+saga (locked), payment, booking's payment id, saga step; the provider's
# ledger (sandbox, 2 autocommitted statements); confirm: booking, payment x2, nights, history, saga step,
# answer, outbox.
PAY_BUDGET = 16


@pytest.fixture
def instant(pg_settings):
    return pg_settings.model_copy(
        update={"payments": pg_settings.payments.model_copy(update={"sandbox_instant": True})}
    )


async def test_a_booking_costs_a_bounded_number_of_statements(instant, client_for):
    headers = bearer(instant, "guest")
    async with client_for(instant) as client:
        runtime = client.app.state.runtime
        room = await seed_room_type(runtime, total=5)
        statements: list[str] = []

        def count(_conn, _cursor, statement, *_args) -> None:
            statements.append(" ".join(statement.split())[:100])

        event.listen(runtime.db.engine.sync_engine, "before_cursor_execute", count)
        try:
            held = await client.post(
                "/api/v1/bookings",
                json=hold_body(room["room_type_id"]),
                headers=headers | {"Idempotency-Key": uuid.uuid4().hex},
            )
            assert held.status_code == 201, held.text
            hold_statements = list(statements)
            statements.clear()
            paid = await client.post(
                f"/api/v1/bookings/{held.json()['id']}/payment",
                json={"payment_method": "tok_success"},
                headers=headers | {"Idempotency-Key": uuid.uuid4().hex},
            )
            assert paid.status_code == 200, paid.text
            pay_statements = list(statements)
        finally:
            event.remove(runtime.db.engine.sync_engine, "before_cursor_execute", count)
    print("\n".join(["hold:", *hold_statements, "pay:", *pay_statements]))
    assert len(hold_statements) <= HOLD_BUDGET, hold_statements
    assert len(pay_statements) <= PAY_BUDGET, pay_statements
    # Every state change is a write: no statement reads back a row the flow itself just wrote.
    assert sum(s.startswith("SELECT bookings") for s in pay_statements) == 1


async def test_a_second_booking_compiles_no_statement(instant, client_for):
    """Every statement of the hot path comes from SQLAlchemy's compiled cache once warm: a
    statement built so that it has no cache key (dialect upserts, for one) is compiled afresh
    on every request, which costs more client CPU than its round trip."""
    headers = bearer(instant, "guest")
    async with client_for(instant) as client:
        runtime = client.app.state.runtime
        room = await seed_room_type(runtime, total=5)
        compiled: list[str] = []

        def note(_conn, _cursor, statement, _parameters, context, _executemany) -> None:
            if context is not None and context.cache_hit != context.dialect.CACHE_HIT:
                compiled.append(f"{context.cache_hit.name}: {' '.join(statement.split())[:100]}")

        for attempt in range(2):
            if attempt == 1:
                event.listen(runtime.db.engine.sync_engine, "before_cursor_execute", note)
            try:
                held = await client.post(
                    "/api/v1/bookings",
                    json=hold_body(room["room_type_id"]),
                    headers=headers | {"Idempotency-Key": uuid.uuid4().hex},
                )
                assert held.status_code == 201, held.text
                paid = await client.post(
                    f"/api/v1/bookings/{held.json()['id']}/payment",
                    json={"payment_method": "tok_success"},
                    headers=headers | {"Idempotency-Key": uuid.uuid4().hex},
                )
                assert paid.status_code == 200, paid.text
            finally:
                if attempt == 1:
                    event.remove(runtime.db.engine.sync_engine, "before_cursor_execute", note)
    assert compiled == [], compiled
