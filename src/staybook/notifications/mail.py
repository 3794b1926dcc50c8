"""Email: MIME composition (text + HTML, calendar attachment) and the two ways out of the
process, real SMTP (aiosmtplib) or, in the demo, `.eml` files in a sink directory.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from email.charset import QP, Charset
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, make_msgid, parseaddr
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
    # Only the transitions around the stay: the default span (1970-2038) costs ~15 ms a message.
    calendar.add_missing_timezones(
        first_date=start.date() - timedelta(days=366), last_date=end.date() + timedelta(days=366)
    )
    return calendar.to_ical()


@dataclass(frozen=True)
class OutgoingMail:
    """A composed message: envelope sender and recipient plus the bytes that go over SMTP."""

    message_id: str
    sender: str
    recipient: str
    data: bytes


# Quoted-printable keeps mostly-ASCII text readable and about a third smaller than base64.
_UTF8 = Charset("utf-8")
_UTF8.header_encoding = QP
_UTF8.body_encoding = QP


def compose_email(
    rendered: RenderedMessage,
    *,
    sender: str,
    recipient: str,
    recipient_name: str | None = None,
    unsubscribe_url: str | None = None,
    calendar: bytes | None = None,
) -> OutgoingMail:
    """multipart/alternative (text, then HTML); wrapped in multipart/mixed when a calendar is attached.

    Built with the `email.mime` classes: several times faster than `EmailMessage` with the
    modern policy, which matters at the sender's throughput (see bench/notify.py).
    """
    if not is_valid_email(recipient):
        raise PermanentFailure(f"not a valid email address: {recipient!r}")
    alternative = MIMEMultipart("alternative")
    alternative.attach(MIMEText(rendered.text, "plain", _UTF8))
    alternative.attach(MIMEText(rendered.html, "html", _UTF8))
    if calendar is None:
        message = alternative
    else:
        message = MIMEMultipart("mixed")
        message.attach(alternative)
        invite = MIMEText(calendar.decode(), "calendar", _UTF8)
        invite.set_param("method", "PUBLISH")
        invite.add_header("Content-Disposition", "attachment", filename="stay.ics")
        message.attach(invite)
    sender_address = parseaddr(sender)[1]
    message_id = make_msgid(domain=sender_address.rpartition("@")[2] or "staybook.localhost")
    message["Subject"] = Header(rendered.subject, _UTF8)
    message["From"] = _address_header(sender)
    message["To"] = formataddr((recipient_name or "", recipient), charset="utf-8")
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    if unsubscribe_url:
        # RFC 8058 one-click: mail clients POST to the URL without opening a page.
        message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return OutgoingMail(message_id, sender_address, recipient, message.as_bytes())


def _address_header(value: str) -> str:
    name, address = parseaddr(value)
    return formataddr((name, address), charset="utf-8")


class Mailer(Protocol):
    kind: str

    async def send(self, mail: OutgoingMail) -> str:
        """Hands the message on; returns its Message-ID. Raises Temporary/PermanentFailure."""


class SmtpMailer:
    """A real SMTP server. 5xx answers are permanent; 4xx, timeouts and refused connections are not."""

    kind = "smtp"

    def __init__(self, settings: NotificationSettings) -> None:
        self.settings = settings

    async def send(self, mail: OutgoingMail) -> str:
        s = self.settings
        try:
            await aiosmtplib.send(
                mail.data,
                sender=mail.sender,
                recipients=[mail.recipient],
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
        return mail.message_id


class MailSink:
    """The demo's outbox for mail: each message becomes an `.eml` file that any mail client opens."""

    kind = "sink"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, mail: OutgoingMail) -> str:
        name = f"{utcnow():%Y%m%dT%H%M%S%f}-{mail.message_id.strip('<>').split('@')[0]}.eml"
        await asyncio.to_thread(self._write, name, mail.data)
        return mail.message_id

    def _write(self, name: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / name).write_bytes(data)


def create_mailer(settings: NotificationSettings) -> Mailer:
    return SmtpMailer(settings) if settings.smtp_host else MailSink(settings.mail_sink_dir)
