"""Email: MIME composition (text + HTML, calendar attachment) and the two ways out of the
process, real SMTP (aiosmtplib) or, in the demo, `.eml` files in a sink directory.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, time
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Any, Protocol

import aiosmtplib
from icalendar import Calendar
from icalendar import Event as CalendarEvent

from staybook.kernel.orm import utcnow
from staybook.kernel.settings import NotificationSettings
from staybook.notifications.policy import is_valid_email, zone
from staybook.notifications.providers import PermanentFailure, TemporaryFailure
from staybook.notifications.templates import RenderedMessage


def stay_calendar(booking: dict[str, Any]) -> bytes:
    """The stay as one calendar event: from check-in time on the arrival day to check-out time
    on the departure day, in the property's own time zone (TZID), at its address."""
    prop = booking["property"]
    tz = zone(prop.get("timezone"))
    start = datetime.combine(date.fromisoformat(booking["check_in"]), time.fromisoformat(prop["check_in_time"]), tz)
    end = datetime.combine(date.fromisoformat(booking["check_out"]), time.fromisoformat(prop["check_out_time"]), tz)
    calendar = Calendar()
    calendar.add("prodid", "-//staybook//notifications//EN")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    event = CalendarEvent()
    event.add("uid", f"{booking['booking_id']}@staybook")
    event.add("dtstamp", utcnow())
    event.add("dtstart", start)
    event.add("dtend", end)
    event.add("summary", f"{prop['name']} ({booking['reference']})")
    event.add("location", ", ".join(p for p in (prop.get("address"), prop.get("city"), prop.get("country")) if p))
    event.add("description", f"{booking['room_type']['name']}, {booking['guests']} guests, ref {booking['reference']}")
    calendar.add_component(event)
    calendar.add_missing_timezones()
    return calendar.to_ical()


def compose_email(
    rendered: RenderedMessage,
    *,
    sender: str,
    recipient: str,
    recipient_name: str | None = None,
    unsubscribe_url: str | None = None,
    calendar: bytes | None = None,
) -> EmailMessage:
    """multipart/alternative (text, then HTML); wrapped in multipart/mixed when a calendar is attached."""
    if not is_valid_email(recipient):
        raise PermanentFailure(f"not a valid email address: {recipient!r}")
    message = EmailMessage()
    message["Subject"] = rendered.subject
    message["From"] = sender
    local, domain = recipient.rsplit("@", 1)
    message["To"] = Address(display_name=recipient_name or "", username=local, domain=domain)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2] or "staybook.localhost")
    message["Auto-Submitted"] = "auto-generated"
    if unsubscribe_url:
        # RFC 8058 one-click: mail clients POST to the URL without opening a page.
        message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    if calendar is not None:
        message.add_attachment(
            calendar, maintype="text", subtype="calendar", filename="stay.ics", params={"method": "PUBLISH"}
        )
    return message


class Mailer(Protocol):
    kind: str

    async def send(self, message: EmailMessage) -> str:
        """Hands the message on; returns its Message-ID. Raises Temporary/PermanentFailure."""


class SmtpMailer:
    """A real SMTP server. 5xx answers are permanent; 4xx, timeouts and refused connections are not."""

    kind = "smtp"

    def __init__(self, settings: NotificationSettings) -> None:
        self.settings = settings

    async def send(self, message: EmailMessage) -> str:
        s = self.settings
        try:
            await aiosmtplib.send(
                message,
                hostname=s.smtp_host,
                port=s.smtp_port,
                start_tls=s.smtp_starttls,
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                timeout=s.smtp_timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [refused.code for refused in error.recipients]
            failure = PermanentFailure if all(code >= 500 for code in codes) else TemporaryFailure
            raise failure(f"recipient refused: {'; '.join(str(r) for r in error.recipients)}") from error
        except aiosmtplib.SMTPResponseException as error:
            failure = PermanentFailure if error.code >= 500 else TemporaryFailure
            raise failure(f"SMTP {error.code} {error.message}") from error
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise TemporaryFailure(f"SMTP unavailable: {type(error).__name__}: {error}") from error
        return message["Message-ID"]


class MailSink:
    """The demo's outbox for mail: each message becomes an `.eml` file that any mail client opens."""

    kind = "sink"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: EmailMessage) -> str:
        message_id = message["Message-ID"]
        name = f"{utcnow():%Y%m%dT%H%M%S%f}-{message_id.strip('<>').split('@')[0]}.eml"
        await asyncio.to_thread(self._write, name, bytes(message))
        return message_id

    def _write(self, name: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / name).write_bytes(data)


def create_mailer(settings: NotificationSettings) -> Mailer:
    return SmtpMailer(settings) if settings.smtp_host else MailSink(settings.mail_sink_dir)
