"""The event bus protocol and its two adapters: in-process (the demo) and NATS JetStream.

Adapters only move bytes and report deliveries; retries, the inbox and dead
letters are the consumer runner's job (`kernel.consumers`), so both adapters
behave the same to a handler. A handler receives deliveries in batches, in
order, so a consumer can handle many events in one transaction: a durable
consumer's batch is what arrives within `batch_seconds` of its first event
(at most `MAX_BATCH`); a replica's is what is at hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from staybook.kernel.events import SUBJECT_PREFIX, EventEnvelope
from staybook.kernel.tasks import cancel_all

log = structlog.get_logger("staybook.bus")

DEAD_LETTER_CONTEXT = "deadletter"


class Delivery(Protocol):
    envelope: EventEnvelope
    attempt: int  # 1 on first delivery

    async def ack(self) -> None: ...

    async def retry_later(self, delay_seconds: float) -> None: ...


DeliveryHandler = Callable[[Sequence[Delivery]], Awaitable[None]]

# At most this many deliveries per handler call.
MAX_BATCH = 100


class Bus(Protocol):
    kind: str

    async def connect(self, contexts: Iterable[str]) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    async def pending(self, consumer: str, subject: str) -> int | None:
        """Messages the durable `consumer` of `subject` has not acknowledged yet; None if unknown."""

    async def publish_batch(self, envelopes: Sequence[EventEnvelope], *, epoch: str = "") -> None:
        """Publishes all or raises; at-least-once, de-duplicated by envelope id where the broker can.

        `epoch` names the database history the events come from (its PostgreSQL timeline):
        the broker de-duplicates only within one epoch. After a restore or a failover the
        database may have lost the record that an event was published, and with it whatever
        consumers did with it; the re-publish must reach the consumers again, whose inboxes
        (restored with the same database) then tell what still needs doing.
        """

    async def publish_dead_letter(self, consumer: str, envelope: EventEnvelope, error: str) -> None: ...

    async def consume(self, consumer: str, subject: str, handler: DeliveryHandler, *, durable: bool) -> None:
        """Starts delivering matching events to `handler` in the background until `close()`.

        `handler` gets each batch in arrival order and must ack or retry every delivery in it.
        durable=True: one shared cursor per consumer name (workers split the work, nothing is
        missed while down), batches gathered for `batch_seconds`. durable=False: this process sees
        every new event (per-replica read models), without waiting to gather a batch.
        """


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard semantics: `*` is one token, `>` is one or more trailing tokens."""
    pattern_tokens, subject_tokens = pattern.split("."), subject.split(".")
    for index, token in enumerate(pattern_tokens):
        if token == ">":
            return len(subject_tokens) > index
        if index >= len(subject_tokens) or (token != "*" and token != subject_tokens[index]):
            return False
    return len(pattern_tokens) == len(subject_tokens)


# ---------------------------------------------------------------------------- in-process


@dataclass
class _LocalDelivery:
    envelope: EventEnvelope
    attempt: int
    queue: asyncio.Queue
    scheduled: set = field(default_factory=set)

    async def ack(self) -> None:
        return None

    async def retry_later(self, delay_seconds: float) -> None:
        retry = _LocalDelivery(self.envelope, self.attempt + 1, self.queue, self.scheduled)

        async def requeue() -> None:
            await asyncio.sleep(delay_seconds)
            self.queue.put_nowait(retry)

        task = asyncio.get_running_loop().create_task(requeue())
        self.scheduled.add(task)
        task.add_done_callback(self.scheduled.discard)


class InProcessBus:
    """Fans events out to asyncio queues in this process. Events in flight are lost if the
    process dies after the relay marked them published: acceptable for the single-process demo,
    which is why production uses JetStream."""

    kind = "in-process"

    def __init__(self, *, batch_seconds: float = 0.0) -> None:
        self.batch_seconds = batch_seconds
        self._subscriptions: list[tuple[str, asyncio.Queue]] = []
        self._tasks: list[asyncio.Task] = []
        self._retries: set = set()
        self.dead_letters: list[tuple[str, EventEnvelope, str]] = []

    async def connect(self, contexts: Iterable[str]) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def pending(self, consumer: str, subject: str) -> int | None:
        return sum(queue.qsize() for pattern, queue in self._subscriptions if pattern == subject)

    async def publish_batch(self, envelopes: Sequence[EventEnvelope], *, epoch: str = "") -> None:
        for envelope in envelopes:
            for pattern, queue in self._subscriptions:
                if subject_matches(pattern, envelope.subject):
                    queue.put_nowait(_LocalDelivery(envelope, 1, queue, self._retries))

    async def publish_dead_letter(self, consumer: str, envelope: EventEnvelope, error: str) -> None:
        self.dead_letters.append((consumer, envelope, error))

    async def consume(self, consumer: str, subject: str, handler: DeliveryHandler, *, durable: bool) -> None:
        queue: asyncio.Queue = asyncio.Queue()
        self._subscriptions.append((subject, queue))

        gather = self.batch_seconds if durable else 0.0

        async def pump() -> None:
            while True:
                batch = [await queue.get()]
                if gather:
                    await asyncio.sleep(gather)
                while len(batch) < MAX_BATCH and not queue.empty():
                    batch.append(queue.get_nowait())
                await handler(batch)

        self._tasks.append(asyncio.get_running_loop().create_task(pump(), name=f"consume:{consumer}:{subject}"))

    async def close(self) -> None:
        await cancel_all([*self._tasks, *self._retries])
        self._tasks.clear()
        self._subscriptions.clear()


# ---------------------------------------------------------------------------- NATS JetStream


def stream_name(context: str, namespace: str = SUBJECT_PREFIX) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{namespace}_{context}".upper())


async def delete_namespace_streams(nats_url: str, namespace: str) -> list[str]:
    """Deletes every JetStream stream of one namespace (a test run, a benchmark, a drill); returns their names."""
    import nats

    connection = await nats.connect(nats_url, connect_timeout=3, max_reconnect_attempts=0)
    try:
        js = connection.jetstream()
        prefix = stream_name("", namespace)
        names = [info.config.name for info in await js.streams_info() if info.config.name.startswith(prefix)]
        for name in names:
            await js.delete_stream(name)
        return names
    finally:
        await connection.close()


async def ensure_stream(js, name: str, subjects: str, *, max_age_seconds: float, duplicate_window_seconds: float):
    """Creates the JetStream stream, or brings an existing one to this configuration."""
    from nats.js.api import StreamConfig
    from nats.js.errors import BadRequestError

    config = StreamConfig(
        name=name, subjects=[subjects], max_age=max_age_seconds, duplicate_window=duplicate_window_seconds
    )
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)


def durable_name(consumer: str, subject: str) -> str:
    readable = subject.removeprefix(SUBJECT_PREFIX + ".").replace("*", "any").replace(">", "all")
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{consumer}__{readable}")


@dataclass
class _NatsDelivery:
    envelope: EventEnvelope
    attempt: int
    msg: object

    async def ack(self) -> None:
        await self.msg.ack()

    async def retry_later(self, delay_seconds: float) -> None:
        await self.msg.nak(delay=delay_seconds)


class NatsJetStreamBus:
    """One stream per context (`STAYBOOK_<CONTEXT>`, subjects `staybook.<context>.>`), created
    idempotently at connect; `Nats-Msg-Id` = outbox id so a re-published event is dropped within
    the stream's duplicate window; pull consumers with explicit acks."""

    kind = "nats"

    def __init__(
        self,
        url: str,
        *,
        name: str = "staybook",
        namespace: str = SUBJECT_PREFIX,
        publish_timeout: float = 5.0,
        max_age_seconds: float = 7 * 86_400,
        duplicate_window_seconds: float = 300,
        ack_wait_seconds: float = 60,
        batch_seconds: float = 0.0,
    ) -> None:
        self.url = url
        self.name = name
        # Subjects and streams live under `namespace` on the wire (tests isolate themselves with
        # their own); envelopes keep the canonical `staybook.` subject.
        self.namespace = namespace
        self.publish_timeout = publish_timeout
        self.max_age_seconds = max_age_seconds
        self.duplicate_window_seconds = duplicate_window_seconds
        self.ack_wait_seconds = ack_wait_seconds
        self.batch_seconds = batch_seconds
        self.nc = None
        self.js = None
        self._contexts: list[str] = []
        self._pending_consumers: list[tuple] = []
        self._tasks: list[asyncio.Task] = []
        self._pull_subscriptions: list = []
        self._closing = False

    async def connect(self, contexts: Iterable[str]) -> None:
        """Connects and creates the streams; if NATS is down, keeps trying in the background.

        Meanwhile `ping` fails (readiness 503), publishing fails (events wait in the outbox)
        and consumers are started once the connection is up.
        """
        self._contexts = [*contexts, DEAD_LETTER_CONTEXT]
        try:
            await self._connect_once()
        except Exception as error:
            log.warning(
                "NATS unreachable; retrying in the background, events wait in the outbox",
                error_type=type(error).__name__,
                context={"url": self.url, "error": str(error)},
            )
            self._tasks.append(asyncio.get_running_loop().create_task(self._connect_until_up(), name="nats-connect"))

    async def _connect_once(self) -> None:
        import nats

        nc = await nats.connect(
            self.url,
            name=self.name,
            connect_timeout=3,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnect,
            reconnected_cb=self._on_reconnect,
        )
        js = nc.jetstream(timeout=self.publish_timeout, publish_async_max_pending=20_000)
        self.nc, self.js = nc, js
        await self._ensure_streams()
        pending, self._pending_consumers = self._pending_consumers, []
        for consumer, subject, handler, durable in pending:
            await self._start_consumer(consumer, subject, handler, durable)

    async def _connect_until_up(self) -> None:
        while not self._closing:
            await asyncio.sleep(1)
            try:
                await self._connect_once()
                log.info("NATS connected", context={"url": self.url})
                return
            except Exception as error:
                if self.nc is not None:
                    with contextlib.suppress(Exception):
                        await self.nc.close()
                    self.nc = self.js = None
                log.warning("NATS still unreachable", error_type=type(error).__name__, context={"url": self.url})

    async def _ensure_streams(self) -> None:
        for context in self._contexts:
            await self._ensure_stream(context)

    def _wire(self, subject: str) -> str:
        return self.namespace + subject[len(SUBJECT_PREFIX) :] if subject.startswith(SUBJECT_PREFIX + ".") else subject

    def _stream(self, context: str) -> str:
        return stream_name(context, self.namespace)

    async def _ensure_stream(self, context: str) -> None:
        await ensure_stream(
            self.js,
            self._stream(context),
            f"{self.namespace}.{context}.>",
            max_age_seconds=self.max_age_seconds,
            duplicate_window_seconds=self.duplicate_window_seconds,
        )

    async def _on_error(self, error: Exception) -> None:
        log.warning("nats error", error_type=type(error).__name__, message=str(error))

    async def _on_disconnect(self) -> None:
        if not self._closing:
            log.warning("nats disconnected", message="reconnecting; the outbox keeps events meanwhile")

    async def _on_reconnect(self) -> None:
        log.info("nats reconnected")
        # A server that lost its store (or a new cluster member) needs the streams again.
        try:
            await self._ensure_streams()
        except Exception as error:
            log.warning("could not re-create streams after reconnect", error_type=type(error).__name__)

    async def ping(self) -> None:
        if self.nc is None or not self.nc.is_connected:
            raise ConnectionError("not connected to NATS")
        await self.nc.flush(timeout=2)

    async def pending(self, consumer: str, subject: str) -> int | None:
        if self.js is None:
            return None
        context = subject.split(".")[1]
        try:
            info = await self.js.consumer_info(self._stream(context), durable_name(consumer, subject))
        except Exception:  # a consumer not declared (yet), NATS away: the gauge keeps its last value
            return None
        return info.num_pending + info.num_ack_pending

    async def publish_batch(self, envelopes: Sequence[EventEnvelope], *, epoch: str = "") -> None:
        if self.nc is None or not self.nc.is_connected:
            raise ConnectionError("not connected to NATS")
        futures = []
        suffix = f"@{epoch}" if epoch else ""
        for envelope in envelopes:
            headers = {"Nats-Msg-Id": f"{envelope.id}{suffix}", **envelope.headers}
            futures.append(
                await self.js.publish_async(self._wire(envelope.subject), envelope.to_bytes(), headers=headers)
            )
        acks = await asyncio.wait_for(asyncio.gather(*futures), timeout=self.publish_timeout)
        if len(acks) != len(envelopes):
            raise RuntimeError("JetStream acknowledged fewer messages than were published")

    async def publish_dead_letter(self, consumer: str, envelope: EventEnvelope, error: str) -> None:
        if self.js is None:
            raise ConnectionError("not connected to NATS")
        subject = f"{self.namespace}.{DEAD_LETTER_CONTEXT}.{re.sub(r'[^A-Za-z0-9_-]', '_', consumer)}"
        headers = {"Nats-Msg-Id": f"{consumer}:{envelope.id}", "Staybook-Error": error[:500]}
        await self.js.publish(subject, envelope.to_bytes(), headers=headers)

    async def consume(self, consumer: str, subject: str, handler: DeliveryHandler, *, durable: bool) -> None:
        if self.js is None:
            self._pending_consumers.append((consumer, subject, handler, durable))
            return
        await self._start_consumer(consumer, subject, handler, durable)

    async def _start_consumer(self, consumer: str, subject: str, handler: DeliveryHandler, durable: bool) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        context = subject.split(".")[1]
        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_seconds,
            max_deliver=-1,  # the consumer runner decides when to give up (dead letter)
            deliver_policy=DeliverPolicy.ALL if durable else DeliverPolicy.NEW,
            max_ack_pending=1000,
            inactive_threshold=None if durable else 300,
        )
        subscription = await self.js.pull_subscribe(
            self._wire(subject),
            durable=durable_name(consumer, subject) if durable else None,
            stream=self._stream(context),
            config=config,
        )
        self._pull_subscriptions.append(subscription)
        task = asyncio.get_running_loop().create_task(
            self._pull_loop(subscription, handler, self.batch_seconds if durable else 0.0),
            name=f"consume:{consumer}:{subject}",
        )
        self._tasks.append(task)

    async def _pull_loop(self, subscription, handler: DeliveryHandler, gather: float) -> None:
        import nats.errors

        while not self._closing:
            try:
                # With a gathering window, wake on the first message and collect the rest below; a
                # fetch of many would wait out its whole timeout for them.
                messages = await subscription.fetch(batch=1 if gather else MAX_BATCH, timeout=1)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("nats fetch failed", error_type=type(error).__name__, message=str(error))
                await asyncio.sleep(1)
                continue
            if gather:
                messages += await self._gather(subscription, MAX_BATCH - len(messages), gather)
            batch = []
            for msg in messages:
                try:
                    envelope = EventEnvelope.from_bytes(msg.data)
                except Exception as error:
                    log.error("undecodable event dropped", subject=msg.subject, error_type=type(error).__name__)
                    await msg.term()
                    continue
                batch.append(_NatsDelivery(envelope, msg.metadata.num_delivered, msg))
            if not batch:
                continue
            try:
                await handler(batch)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # An ack or a dead-letter write that failed (NATS or the database went away): the
                # unacked messages come back after ack_wait; the consumer must not stop for good.
                log.warning("event batch handling failed", error_type=type(error).__name__, message=str(error))
                await asyncio.sleep(1)

    async def _gather(self, subscription, room: int, seconds: float) -> list:
        """The messages arriving within `seconds` (at most `room`); errors end the gathering early."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        messages: list = []
        while len(messages) < room and (left := deadline - loop.time()) > 0.005:
            try:
                messages += await subscription.fetch(batch=room - len(messages), timeout=left)
            except asyncio.CancelledError:
                raise
            except Exception:  # a timeout (nothing more came) or a broken fetch: handle what we have
                break
        return messages

    async def close(self) -> None:
        self._closing = True
        await cancel_all(self._tasks)
        self._tasks.clear()
        # A fetch cancelled above can leave messages in its subscription's queue that nobody will
        # take; drain() would wait for them until its timeout, so drop pull subscriptions first.
        for subscription in self._pull_subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        self._pull_subscriptions.clear()
        if self.nc is not None:
            # Drain flushes pending publishes; bound it so a dead server cannot hold up shutdown.
            try:
                await asyncio.wait_for(self.nc.drain(), timeout=5)
            except Exception:
                with contextlib.suppress(Exception):
                    await self.nc.close()
            self.nc = None


def create_bus(
    nats_url: str | None, name: str = "staybook", namespace: str = SUBJECT_PREFIX, *, batch_seconds: float = 0.0
) -> Bus:
    if nats_url:
        return NatsJetStreamBus(nats_url, name=name, namespace=namespace, batch_seconds=batch_seconds)
    return InProcessBus(batch_seconds=batch_seconds)
