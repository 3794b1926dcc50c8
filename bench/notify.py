"""Notification sending throughput vs the bare aiosmtplib send loop, same SMTP server, same run.

An aiosmtpd sink runs in its own process on 127.0.0.1. Phases:
1. ceiling: send N copies of one prebuilt confirmation (same bytes, with its .ics) with
   `aiosmtplib.send`, `concurrency` at a time (one connection per message, as the sender does);
2. N pending booking-confirmation deliveries are written to PostgreSQL (not timed);
3. the sender drains them: claim (SKIP LOCKED) -> render Jinja2 text+HTML -> MIME + ICS ->
   aiosmtplib -> record the attempt, `batch` per claim, `concurrency` sends in flight.

    .venv/bin/python -m bench.notify [--messages 2000] [--concurrency 8] [--batch 100]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import uuid

import aiosmtplib
import psycopg
from sqlalchemy import insert

from bench.harness import free_port, ratio, write_result
from staybook import migrate
from staybook.identity import bootstrap as identity_bootstrap
from staybook.kernel.orm import new_id, utcnow
from staybook.kernel.runtime import Runtime
from staybook.kernel.settings import Settings
from staybook.notifications.delivery import send_due
from staybook.notifications.mail import SmtpMailer, compose_email, stay_calendar
from staybook.notifications.models import Delivery
from staybook.notifications.previews import SAMPLES
from staybook.notifications.providers import SandboxProvider
from staybook.notifications.service import Notifier
from staybook.notifications.templates import Templates

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
CONTEXT = {**SAMPLES["booking_confirmed"], "recipient_name": "Ada Lovelace"}


def start_sink(port: int) -> subprocess.Popen:
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}", "-c", "aiosmtpd.handlers.Sink"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process


async def wait_for_port(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("SMTP sink did not start")


async def bare_send_loop(port: int, count: int, concurrency: int) -> float:
    """The ceiling: aiosmtplib.send of an already-built message, nothing else."""
    templates = Templates()
    rendered = templates.render("booking_confirmed", "en", CONTEXT)
    calendar = stay_calendar(CONTEXT["booking"])
    mail = compose_email(rendered, sender="no-reply@staybook.test", recipient="ada@example.org", calendar=calendar)
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await aiosmtplib.send(
                mail.data, sender=mail.sender, recipients=[mail.recipient], hostname="127.0.0.1", port=port, timeout=30
            )

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return count / (time.perf_counter() - started)


def render_only(count: int) -> float:
    templates = Templates()
    started = time.perf_counter()
    for _ in range(count):
        rendered = templates.render("booking_confirmed", "en", CONTEXT)
        compose_email(
            rendered,
            sender="no-reply@staybook.test",
            recipient="ada@example.org",
            calendar=stay_calendar(CONTEXT["booking"]),
        )
    return count / (time.perf_counter() - started)


async def sender_pipeline(settings: Settings, count: int) -> float:
    runtime = Runtime(settings)
    await runtime.start()
    try:
        mailer = SmtpMailer(settings.notifications)
        notifier = Notifier(runtime, Templates(), mailer, SandboxProvider(), identity_bootstrap.build(runtime))
        now = utcnow()
        rows = [
            {
                "id": new_id(),
                "event_id": uuid.uuid4(),
                "user_id": uuid.uuid4(),
                "channel": "email",
                "template": "booking_confirmed",
                "locale": "en",
                "recipient": f"guest{i}@example.org",
                "recipient_hash": f"{i:064x}",
                "context": CONTEXT,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for i in range(count)
        ]
        async with runtime.db.unit_of_work() as uow:
            for start in range(0, count, 500):
                await uow.session.execute(insert(Delivery), rows[start : start + 500])
        started = time.perf_counter()
        sent = 0
        while sent < count:
            handled = await send_due(notifier)
            if handled == 0:
                raise RuntimeError(f"queue empty after {sent} of {count}")
            sent += handled
        return count / (time.perf_counter() - started)
    finally:
        await runtime.close()


async def run(messages: int, concurrency: int, batch: int) -> dict:
    port = free_port()
    sink = start_sink(port)
    database = f"staybook_bench_notify_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        await wait_for_port(port)
        settings = Settings(
            database_url=f"postgresql://postgres@127.0.0.1:5432/{database}",
            environment="test",
            log_json=False,
            log_level="WARNING",
            notifications={
                "smtp_host": "127.0.0.1",
                "smtp_port": port,
                "concurrency": concurrency,
                "batch_size": batch,
                "from_address": "no-reply@staybook.test",
            },
        )
        await asyncio.to_thread(migrate.upgrade, settings)
        await bare_send_loop(port, min(200, messages), concurrency)  # warm-up
        ceiling = await bare_send_loop(port, messages, concurrency)
        rendering = render_only(min(messages, 1000))
        pipeline = await sender_pipeline(settings, messages)
    finally:
        sink.terminate()
        sink.wait()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    return {
        "bare_aiosmtplib_per_s": round(ceiling, 1),
        "render_and_compose_per_s": round(rendering, 1),
        "sender_per_s": round(pipeline, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    figures = asyncio.run(run(args.messages, args.concurrency, args.batch))
    sender_ratio = ratio(figures["sender_per_s"], figures["bare_aiosmtplib_per_s"])
    print(f"bare aiosmtplib.send loop        : {figures['bare_aiosmtplib_per_s']:>9.1f} msg/s   (ceiling)")
    print(f"render + MIME + ICS only (no I/O): {figures['render_and_compose_per_s']:>9.1f} msg/s")
    print(f"sender (claim, render, SMTP, log): {figures['sender_per_s']:>9.1f} msg/s   ratio {sender_ratio}")
    path = write_result(
        "notify",
        {
            "what": "notification sender: PostgreSQL claim (SKIP LOCKED) -> Jinja2 text+HTML -> MIME + ICS "
            "-> aiosmtplib to a local aiosmtpd sink -> attempt recorded",
            "ceiling": "bare aiosmtplib.send of one prebuilt message of the same size, same concurrency, same run",
            "messages": args.messages,
            "concurrency": args.concurrency,
            "batch": args.batch,
            **figures,
            "ratio_to_ceiling": sender_ratio,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
