"""The signal log: where a batch is durable before `POST /signals` answers 202.

On NATS JetStream: the stream `<NAMESPACE>_SIGNALS` (subjects `<namespace>.signals.>`),
one message per batch (compressed msgpack, `signals.encode_batch`), kept 7 days,
`Nats-Msg-Id` = batch id so a retried batch is stored once. It has its own
connection, apart from the event bus: its volume is a thousand times the domain
events'. Consumers are durable pull consumers, one per group (`aggregate`,
`archive`); run more workers to share a group's messages.

In the demo: in-process queues, one per group, bounded (a full queue refuses new
batches with 503 instead of growing without end).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import structlog

from staybook.kernel.bus import ensure_stream, stream_name
from staybook.kernel.errors import ServiceUnavailable
from staybook.personalization.signals import SignalBatch, decode_batch, encode_batch

log = structlog.get_logger("staybook.personalization.stream")

GROUPS = ("aggregate", "archive")
BatchHandler = Callable[[Sequence[SignalBatch]], Awaitable[None]]
# A consumer handles at most this many stream messages (batches) at once.
FETCH_BATCHES = 64


class SignalLog(Protocol):
    kind: str

    async def start(self) -> None: ...

    async def append(self, batch: SignalBatch) -> None:
        """Returns once the batch is durable (or raises ServiceUnavailable)."""

    async def consume(self, group: str, handler: BatchHandler, stop: asyncio.Event) -> None:
        """Hands the group's batches to `handler` until `stop`; a batch whose handler raised
        comes again later."""

    async def close(self) -> None: ...


class InProcessSignalLog:
    kind = "in-process"

    def __init__(self, max_pending: int = 10_000) -> None:
        self._queues = {group: asyncio.Queue(max_pending) for group in GROUPS}

    async def start(self) -> None:
        return None

    async def append(self, batch: SignalBatch) -> None:
        if any(queue.full() for queue in self._queues.values()):
            raise ServiceUnavailable("Signals are arriving faster than they are handled; retry shortly")
        for queue in self._queues.values():
            queue.put_nowait(batch)

    async def consume(self, group: str, handler: BatchHandler, stop: asyncio.Event) -> None:
        queue = self._queues[group]
        while not stop.is_set():
            try:
                first = await asyncio.wait_for(queue.get(), timeout=0.5)
            except TimeoutError:
                continue
            batches = [first]
            while len(batches) < FETCH_BATCHES and not queue.empty():
                batches.append(queue.get_nowait())
            try:
                await handler(batches)
            except Exception:
                log.exception("signal batches failed; they come again", context={"group": group})
                await asyncio.sleep(1)
                for batch in batches:
                    queue.put_nowait(batch)

    async def close(self) -> None:
        return None


class NatsSignalLog:
    kind = "nats"

    def __init__(
        self,
        url: str,
        namespace: str,
        *,
        max_age_seconds: float,
        duplicate_window_seconds: float,
        name: str = "staybook-signals",
        publish_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.stream = stream_name("signals", namespace)
        self.subject = f"{namespace}.signals.batch"
        self.max_age_seconds = max_age_seconds
        self.duplicate_window_seconds = duplicate_window_seconds
        self.name = name
        self.publish_timeout = publish_timeout
        self.nc = None
        self.js = None

    async def start(self) -> None:
        """Connects and creates the stream; if NATS is down, appends answer 503 until it is up."""
        import nats

        try:
            self.nc = await nats.connect(
                self.url,
                name=self.name,
                connect_timeout=3,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                pending_size=64 * 1024 * 1024,
            )
            self.js = self.nc.jetstream(timeout=self.publish_timeout)
            await self._ensure_stream()
        except Exception as error:
            log.warning("signal stream unavailable", error_type=type(error).__name__, context={"url": self.url})

    async def _ensure_stream(self) -> None:
        await ensure_stream(
            self.js,
            self.stream,
            f"{self.namespace}.signals.>",
            max_age_seconds=self.max_age_seconds,
            duplicate_window_seconds=self.duplicate_window_seconds,
        )

    async def ping(self) -> None:
        if self.nc is None or not self.nc.is_connected:
            raise ConnectionError("signal stream not connected")
        await self.nc.flush(timeout=2)

    async def append(self, batch: SignalBatch) -> None:
        await self.append_encoded(batch.batch_id.hex, encode_batch(batch))

    async def append_encoded(self, batch_id: str, data: bytes) -> None:
        if self.js is None or not self.nc.is_connected:
            raise ServiceUnavailable("The signal stream is unavailable; retry shortly")
        try:
            await self.js.publish(self.subject, data, headers={"Nats-Msg-Id": batch_id})
        except Exception as error:
            raise ServiceUnavailable("The signal stream did not acknowledge the batch; retry it") from error

    async def consume(self, group: str, handler: BatchHandler, stop: asyncio.Event) -> None:
        import nats.errors
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        while self.js is None and not stop.is_set():
            await asyncio.sleep(1)
            with contextlib.suppress(Exception):
                await self.start()
        if stop.is_set():
            return
        subscription = await self.js.pull_subscribe(
            self.subject,
            durable=f"signals-{group}",
            stream=self.stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=60,
                deliver_policy=DeliverPolicy.ALL,
                max_ack_pending=FETCH_BATCHES * 8,
            ),
        )
        try:
            while not stop.is_set():
                try:
                    messages = await subscription.fetch(batch=FETCH_BATCHES, timeout=0.5)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                batches, good = [], []
                for msg in messages:
                    try:
                        batches.append(decode_batch(msg.data))
                        good.append(msg)
                    except Exception as error:
                        log.error("undecodable signal batch dropped", error_type=type(error).__name__)
                        await msg.term()
                try:
                    await handler(batches)
                except Exception:
                    log.exception("signal batches failed; they come again", context={"group": group})
                    for msg in good:
                        await msg.nak(delay=1)
                    continue
                for msg in good:
                    await msg.ack()
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), timeout=5)
            self.nc = None
            self.js = None
