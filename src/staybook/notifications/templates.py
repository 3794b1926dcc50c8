"""Rendering notifications from the Jinja2 templates shipped in `templates/<locale>/`.

Each type has `<type>.txt` (blocks `subject`, `body` and, for SMS/push, `short`) and
`<type>.html` (extends `_layout.html`). Undefined variables raise, and `check()` renders
every type in every locale with the preview samples at start-up, so a broken template
stops the process instead of failing a send hours later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any

from babel import Locale
from babel.dates import format_date, format_time
from babel.numbers import format_currency
from jinja2 import Environment, PackageLoader, StrictUndefined, Template, pass_context, select_autoescape
from jinja2.runtime import Context

from staybook.kernel.schemas import minor_unit_digits
from staybook.notifications.policy import LOCALES, TYPES, zone
from staybook.notifications.previews import SAMPLES


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    text: str
    html: str
    short: str | None


class TemplateCheckFailed(RuntimeError):
    """Raised at start-up when some template does not render."""


@cache
def _babel_locale(code: str) -> Locale:
    # Parsing a locale per formatted value is a measurable share of rendering (bench/notify.py).
    return Locale.parse(code)


# The filters are pure: a booking's dates and amounts appear in the subject, both bodies and the
# short text, and its three mails format them again; Babel formatting was a third of rendering.
@pass_context
def _date(context, value: str | date) -> str:
    return _format_date(value, context["locale"])


@pass_context
def _datetime(context, value: str | datetime) -> str:
    return _format_datetime(value, context["locale"], context.get("timezone"))


@pass_context
def _money(context, value: dict[str, Any]) -> str:
    return _format_money(int(value["amount"]), value["currency"], context["locale"])


@lru_cache(maxsize=4096)
def _format_date(value: str | date, locale: str) -> str:
    day = date.fromisoformat(value) if isinstance(value, str) else value
    return format_date(day, format="full", locale=_babel_locale(locale))


@lru_cache(maxsize=4096)
def _format_datetime(value: str | datetime, locale: str, timezone: str | None) -> str:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    local = moment.astimezone(zone(timezone))
    babel_locale = _babel_locale(locale)
    day = format_date(local.date(), format="full", locale=babel_locale)
    return f"{day}, {format_time(local, format='short', locale=babel_locale)}"


@lru_cache(maxsize=4096)
def _format_money(amount: int, currency: str, locale: str) -> str:
    value = Decimal(amount).scaleb(-minor_unit_digits(currency))
    return format_currency(value, currency, locale=_babel_locale(locale))


class Templates:
    """The template set, loaded once per process."""

    def __init__(self) -> None:
        self.environment = Environment(
            loader=PackageLoader("staybook.notifications", "templates"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            # Templates are package data: checked once at start-up, never edited under a running process.
            auto_reload=False,
        )
        self.environment.filters.update(date=_date, datetime=_datetime, money=_money)

    def render(
        self, type_name: str, locale: str, context: dict[str, Any], *, unsubscribe_url: str | None = None
    ) -> RenderedMessage:
        """Renders subject, plain text, HTML and (where the type has one) the short SMS/push text."""
        values = {**context, "locale": locale, "type": type_name, "unsubscribe_url": unsubscribe_url}
        text = self.environment.get_template(f"{locale}/{type_name}.txt")
        html = self.environment.get_template(f"{locale}/{type_name}.html")
        # One context for the three blocks: blocks only read it.
        blocks = text.new_context(values)
        return RenderedMessage(
            subject=" ".join(_block(text, "subject", blocks).split()),
            text=_block(text, "body", blocks).strip() + "\n",
            html=html.render(values),
            short=" ".join(_block(text, "short", blocks).split()) if TYPES[type_name].short else None,
        )

    def check(self) -> int:
        """Renders every type in every locale with its sample; raises listing all that fail."""
        failures = []
        rendered = 0
        for locale in LOCALES:
            for type_name in TYPES:
                try:
                    message = self.render(type_name, locale, SAMPLES[type_name])
                    if (
                        not message.subject
                        or not message.text.strip()
                        or (TYPES[type_name].short and not message.short)
                    ):
                        raise ValueError("empty subject, body or short text")
                    rendered += 1
                except Exception as error:
                    failures.append(f"{locale}/{type_name}: {type(error).__name__}: {error}")
        if failures:
            raise TemplateCheckFailed("notification templates do not render:\n  " + "\n  ".join(failures))
        return rendered


def _block(template: Template, name: str, context: Context) -> str:
    return "".join(template.blocks[name](context))
