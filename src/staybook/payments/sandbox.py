"""The sandbox provider: a card processor that behaves like a real one, for the demo, tests and benches.

Test tokens decide what happens (as with real providers' test cards):

| token | result |
|---|---|
| `tok_success`, `tok_visa`, any other `tok_...` | authorised, capturable |
| `tok_decline` | declined (`card_declined`) |
| `tok_insufficient_funds` | declined (`insufficient_funds`) |
| `tok_provider_error` | the provider fails (HTTP 500 at a real one): nothing recorded |
| `tok_timeout` | the answer comes after the client gave up; the charge still happens and a webhook tells |

The sandbox keeps its own ledger (`sandbox_charges`, the "bank's" books, apart from
staybook's `payments`) and owes the merchant a signed webhook for every change
(`sandbox_webhooks`), delivered over HTTP with retries and backoff until acknowledged.
Each call waits `sandbox_latency_ms` like a network round trip; `sandbox_instant`
(benchmarks) skips the wait and the webhooks but still keeps the ledger, each change one
autocommitted statement (on PostgreSQL): the sandbox stands in for a remote system whose
round trips are not staybook's to measure.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta

import httpx
import orjson
import structlog
from sqlalchemy import select, update

from staybook.kernel.db import Database, Sql, UnitOfWork, insert_sql
from staybook.kernel.orm import utcnow
from staybook.kernel.settings import Settings
from staybook.payments.models import SandboxCharge, SandboxWebhook
from staybook.payments.provider import (
    ChargeState,
    ChargeStatus,
    ProviderError,
    ProviderEvent,
    ProviderTimeout,
    sign,
    verify,
)

log = structlog.get_logger("staybook.payments.sandbox")

SIGNATURE_HEADER = "sandbox-signature"
DECLINES = {"tok_decline": "card_declined", "tok_insufficient_funds": "insufficient_funds"}
CHARGES = SandboxCharge.__table__
_CHARGE_COLUMNS = (
    "reference",
    "idempotency_key",
    "token",
    "amount",
    "currency",
    "status",
    "captured_amount",
    "refunded_amount",
    "decline_code",
    "created_at",
    "updated_at",
)
_RETURNING = " RETURNING " + ", ".join(_CHARGE_COLUMNS)
_RETURNED = [CHARGES.c[name] for name in _CHARGE_COLUMNS]
_NEW_CHARGE = Sql(
    insert_sql(CHARGES, _CHARGE_COLUMNS) + " ON CONFLICT (idempotency_key) DO NOTHING" + _RETURNING,
    table=CHARGES,
    returns=_RETURNED,
)
_BY_KEY = Sql(
    f"SELECT {', '.join(_CHARGE_COLUMNS)} FROM sandbox_charges WHERE idempotency_key = :idempotency_key",
    table=CHARGES,
    returns=_RETURNED,
)
_BY_REFERENCE = Sql(
    f"SELECT {', '.join(_CHARGE_COLUMNS)} FROM sandbox_charges WHERE reference = :reference",
    table=CHARGES,
    returns=_RETURNED,
)


@functools.cache
def _move_statement(status: ChargeStatus, allowed_from: tuple[ChargeStatus, ...], amounts: tuple[str, ...]) -> Sql:
    changes = ", ".join(["status = :status", "updated_at = :updated_at", *(f"{name} = :{name}" for name in amounts)])
    allowed = ChargeStatus.sql_list(allowed_from)
    return Sql(
        f"UPDATE sandbox_charges SET {changes} WHERE reference = :reference AND status IN ({allowed})" + _RETURNING,
        table=CHARGES,
        returns=_RETURNED,
    )


MAX_DELIVERY_ATTEMPTS = 12
# How long a leased delivery stays invisible to other deliverers while it is being posted.
LEASE = timedelta(seconds=30)


def _state(row) -> ChargeState:
    return ChargeState(
        reference=row.reference,
        idempotency_key=row.idempotency_key,
        status=ChargeStatus(row.status),
        amount=row.amount,
        currency=row.currency,
        captured_amount=row.captured_amount,
        refunded_amount=row.refunded_amount,
        decline_code=row.decline_code,
    )


class SandboxProvider:
    name = "sandbox"

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.secret = settings.payments.webhook_secret.get_secret_value().encode()
        self.tolerance = settings.payments.webhook_tolerance_seconds
        self.timeout = settings.payments.provider_timeout_seconds
        self.latency = 0.0 if settings.payments.sandbox_instant else settings.payments.sandbox_latency_ms / 1000
        # Instant mode writes each ledger change as one autocommitted statement (see `_ledger`).
        self.webhooks = not settings.payments.sandbox_instant
        self.webhook_url = settings.payments.sandbox_webhook_url or (
            f"http://{settings.http_host}:{settings.http_port}/api/v1/payments/webhooks/sandbox"
        )
        self.clock = time.time  # what webhook timestamps are checked against
        self._background: set[asyncio.Task] = set()
        # Deliveries belong to the worker (its periodic job); a process that runs no worker only
        # writes what it owes. The embedded demo's in-process worker also posts right after a change.
        self.deliver_after_change = settings.run_worker_in_process
        # Where webhooks go: one client for every delivery of this process, made on first use (a client,
        # and its TLS context, per delivery cost API processes two thirds of their CPU under load), or
        # one set here (tests point it at an in-process app).
        self.client: httpx.AsyncClient | None = None
        self._own_client: httpx.AsyncClient | None = None

    # ----------------------------------------------------------- the merchant's calls

    async def authorise(self, *, token: str, amount: int, currency: str, idempotency_key: str) -> ChargeState:
        if token == "tok_provider_error":
            await self._network()
            raise ProviderError("sandbox: internal error (test token tok_provider_error)")
        slow = token == "tok_timeout"
        work = asyncio.ensure_future(self._authorise(token, amount, currency, idempotency_key, slow=slow))
        self._background.add(work)
        work.add_done_callback(self._background.discard)
        try:
            # shield: like a real provider, the charge goes on when the client stops waiting.
            return await asyncio.wait_for(asyncio.shield(work), timeout=self.timeout)
        except TimeoutError as error:
            raise ProviderTimeout(f"sandbox: no answer within {self.timeout} s") from error

    async def capture(self, reference: str, *, amount: int, idempotency_key: str) -> ChargeState:
        await self._network()
        return await self._move(reference, ChargeStatus.CAPTURED, {ChargeStatus.AUTHORISED}, captured_amount=amount)

    async def void(self, reference: str, *, idempotency_key: str) -> ChargeState:
        await self._network()
        return await self._move(reference, ChargeStatus.VOIDED, {ChargeStatus.AUTHORISED})

    async def refund(self, reference: str, *, amount: int, idempotency_key: str) -> ChargeState:
        await self._network()
        return await self._move(reference, ChargeStatus.REFUNDED, {ChargeStatus.CAPTURED}, refunded_amount=amount)

    async def find(self, idempotency_key: str) -> ChargeState | None:
        await self._network()
        async with self.db.session() as session:
            row = await session.scalar(select(SandboxCharge).where(SandboxCharge.idempotency_key == idempotency_key))
        return _state(row) if row is not None else None

    async def retrieve(self, reference: str) -> ChargeState | None:
        await self._network()
        async with self.db.session() as session:
            row = await session.scalar(select(SandboxCharge).where(SandboxCharge.reference == reference))
        return _state(row) if row is not None else None

    async def charges(self, since: datetime | None = None) -> AsyncIterator[ChargeState]:
        await self._network()
        query = select(SandboxCharge).order_by(SandboxCharge.created_at, SandboxCharge.reference)
        if since is not None:
            query = query.where(SandboxCharge.created_at >= since)
        async with self.db.session() as session:
            rows = (await session.scalars(query)).all()
        for row in rows:
            yield _state(row)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        verify(self.secret, headers.get(SIGNATURE_HEADER), body, tolerance_seconds=self.tolerance, now=self.clock())
        raw = orjson.loads(body)
        data = raw["data"]
        charge = ChargeState(
            reference=str(data["reference"]),
            idempotency_key=str(data["idempotency_key"]),
            status=ChargeStatus(data["status"]),
            amount=int(data["amount"]),
            currency=str(data["currency"]),
            captured_amount=int(data.get("captured_amount", 0)),
            refunded_amount=int(data.get("refunded_amount", 0)),
            decline_code=data.get("decline_code"),
        )
        return ProviderEvent(id=str(raw["id"]), type=str(raw["type"]), charge=charge)

    # ----------------------------------------------------------- the provider's side

    async def _network(self) -> None:
        if self.latency:
            await asyncio.sleep(self.latency)

    async def _authorise(self, token: str, amount: int, currency: str, key: str, *, slow: bool) -> ChargeState:
        await asyncio.sleep(self.timeout * 2 if slow else 0)
        await self._network()
        now = utcnow()
        decline = DECLINES.get(token)
        values = {
            "reference": "ch_" + secrets.token_hex(12),
            "idempotency_key": key,
            "token": token,
            "amount": amount,
            "currency": currency,
            "status": ChargeStatus.DECLINED if decline else ChargeStatus.AUTHORISED,
            "captured_amount": 0,
            "refunded_amount": 0,
            "decline_code": decline,
            "created_at": now,
            "updated_at": now,
        }
        async with self._ledger() as ledger:
            # A retried call (same idempotency key) finds the first call's charge.
            row = await ledger.fetchrow(_NEW_CHARGE, values)
            if row is None:
                return _state(await ledger.fetchrow(_BY_KEY, {"idempotency_key": key}))
            self._owe_webhook(ledger, "charge.declined" if decline else "charge.authorised", row)
        self._kick()
        return _state(row)

    async def _move(
        self, reference: str, status: ChargeStatus, allowed_from: set[ChargeStatus], **amounts: int
    ) -> ChargeState:
        async with self._ledger() as ledger:
            # One conditional UPDATE; only when it does not apply, a read says why.
            statement = _move_statement(status, tuple(sorted(allowed_from)), tuple(sorted(amounts)))
            row = await ledger.fetchrow(
                statement, {"reference": reference, "status": status, "updated_at": utcnow(), **amounts}
            )
            if row is None:
                current = await ledger.fetchrow(_BY_REFERENCE, {"reference": reference})
                if current is None:
                    raise ProviderError(f"sandbox: no charge {reference}")
                if current.status == status:
                    return _state(current)  # a retried call: the first one's result
                raise ProviderError(f"sandbox: cannot move charge {reference} from {current.status} to {status}")
            self._owe_webhook(ledger, f"charge.{status}", row)
        self._kick()
        return _state(row)

    @contextlib.asynccontextmanager
    async def _ledger(self):
        """Where a ledger change is written: one transaction with the webhook it owes, or in instant
        mode (no webhooks) on PostgreSQL one autocommitted statement (no BEGIN/COMMIT round trips)."""
        if self.webhooks:
            async with self.db.unit_of_work() as uow:
                yield uow
        else:
            async with self.db.transaction(autocommit=True) as uow:
                yield uow

    def _owe_webhook(self, uow: UnitOfWork, event_type: str, row) -> None:
        if not self.webhooks:
            return
        event_id = "evt_" + secrets.token_hex(12)
        payload = {
            "id": event_id,
            "type": event_type,
            "created": int(time.time()),
            "data": _state(row).__dict__,
        }
        uow.session.add(SandboxWebhook(id=event_id, event_type=event_type, payload=payload, attempts=0))

    def _kick(self) -> None:
        if not self.webhooks or not self.deliver_after_change:
            return
        task = asyncio.ensure_future(self.deliver_pending())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def deliver_pending(self, client: httpx.AsyncClient | None = None, *, limit: int = 50) -> int:
        """Posts owed webhooks (signed) to the merchant; failures retry with exponential backoff.

        The batch is leased in one short transaction (`next_attempt_at` pushed out, SKIP LOCKED so
        several processes share the work) and posted with no transaction open: the receiver may be
        this very process, writing to the same database (on SQLite, the one writer).
        """
        delivered = 0
        try:
            async with self.db.unit_of_work() as uow:
                rows = (
                    await uow.session.scalars(
                        select(SandboxWebhook)
                        .where(SandboxWebhook.delivered_at.is_(None), SandboxWebhook.next_attempt_at <= utcnow())
                        .order_by(SandboxWebhook.created_at)
                        .limit(limit)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
                for row in rows:
                    row.next_attempt_at = utcnow() + LEASE
            outcomes = await asyncio.gather(*(self._post(client, row.payload) for row in rows))
            for row, (ok, error) in zip(rows, outcomes, strict=True):
                attempts = row.attempts + 1
                values: dict = {"attempts": attempts, "last_error": error}
                if ok:
                    values["delivered_at"] = utcnow()
                    delivered += 1
                elif attempts >= MAX_DELIVERY_ATTEMPTS:
                    values["delivered_at"] = utcnow()
                    log.warning("sandbox webhook abandoned", context={"event_id": row.id, "error": error})
                else:
                    values["next_attempt_at"] = utcnow() + timedelta(seconds=min(600, 2**attempts))
                async with self.db.unit_of_work() as uow:
                    await uow.session.execute(
                        update(SandboxWebhook).where(SandboxWebhook.id == row.id).values(**values)
                    )
        except Exception as error:  # the sandbox's own trouble must not break the caller's request
            log.warning("sandbox webhook delivery failed", error_type=type(error).__name__, message=str(error))
        return delivered

    async def _post(self, client: httpx.AsyncClient | None, payload: dict) -> tuple[bool, str | None]:
        body = orjson.dumps(payload)
        headers = {"content-type": "application/json", SIGNATURE_HEADER: sign(self.secret, int(time.time()), body)}
        try:
            if client is not None or self.client is not None:
                response = await (client or self.client).post(
                    "/api/v1/payments/webhooks/sandbox", content=body, headers=headers
                )
            else:
                if self._own_client is None:
                    self._own_client = httpx.AsyncClient(timeout=5, limits=httpx.Limits(max_connections=20))
                response = await self._own_client.post(self.webhook_url, content=body, headers=headers)
        except httpx.HTTPError as error:
            return False, f"{type(error).__name__}: {error}"
        if response.status_code < 300:
            return True, None
        return False, f"HTTP {response.status_code}"

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._own_client is not None:
            await self._own_client.aclose()
            self._own_client = None
