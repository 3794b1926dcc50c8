"""Languages of the web pages: English and German through Babel.

Messages come from `locale/<lang>/LC_MESSAGES/messages.po` (English is the source language),
compiled in memory when first used, so there is no build step. Dates and money are formatted by
Babel for the page's locale, money in the currency it is in (integer minor units in, never floats).
The locale is the `sb_lang` cookie, else the best match of Accept-Language, else English.
"""

from __future__ import annotations

import io
from datetime import date, datetime
from decimal import Decimal
from functools import cache, lru_cache
from importlib import resources

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency
from babel.support import NullTranslations, Translations

from staybook.catalog.schemas import AMENITIES, PROPERTY_TYPES
from staybook.kernel.schemas import minor_unit_digits

LOCALES = ("en", "de")
DEFAULT_LOCALE = "en"
LANG_COOKIE = "sb_lang"
LANGUAGE_NAMES = {"en": "English", "de": "Deutsch"}


def pick_locale(cookie: str | None, accept_language: str | None) -> str:
    """The page's locale: a supported `sb_lang` cookie, else the first supported Accept-Language."""
    if cookie in LOCALES:
        return cookie
    for part in (accept_language or "")[:200].split(","):
        tag = part.split(";")[0].strip().lower()
        language = tag.split("-")[0]
        if language in LOCALES:
            return language
    return DEFAULT_LOCALE


@cache
def translations(locale: str) -> NullTranslations:
    if locale == DEFAULT_LOCALE:
        return NullTranslations()
    source = resources.files("staybook.web") / "locale" / locale / "LC_MESSAGES" / "messages.po"
    with source.open("rb") as po:
        catalog = read_po(po, locale=locale)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


# Amenities and property types are codes ("hot_tub"); most read as their words ("Hot tub"), these
# do not. The English label is the message id the catalogs translate.
CODE_LABELS = {
    "wifi": "Wi-Fi",
    "tv": "TV",
    "bbq": "BBQ",
    "ev_charger": "EV charger",
    "front_desk_24h": "24-hour front desk",
    "pet_friendly": "Pet-friendly",
    "non_smoking": "Non-smoking",
}


def code_label(code: str) -> str:
    """The English label of an amenity or property type code ("hot_tub" -> "Hot tub", "tv" -> "TV")."""
    return CODE_LABELS.get(code) or code.replace("_", " ").capitalize()


@cache
def code_labels(locale: str) -> dict[str, str]:
    """Every amenity's and property type's label in `locale`, translated once."""
    translate = translations(locale).gettext
    return {code: translate(code_label(code)) for code in (*AMENITIES, *PROPERTY_TYPES)}


@cache
def _locale(code: str) -> Locale:
    return Locale.parse(code)


@lru_cache(maxsize=8192)
def money(amount: int, currency: str, locale: str) -> str:
    """Integer minor units of `currency` as the locale writes money (12345 EUR -> '€123.45' / '123,45 €')."""
    value = Decimal(int(amount)).scaleb(-minor_unit_digits(currency))
    return format_currency(value, currency, locale=_locale(locale))


def plain_amount(amount: int, currency: str) -> str:
    """Minor units as the plain decimal a form field takes back (12050 EUR -> '120.50')."""
    return str(Decimal(int(amount)).scaleb(-minor_unit_digits(currency)))


@lru_cache(maxsize=8192)
def day(value: date | str, locale: str, style: str = "medium") -> str:
    moment = date.fromisoformat(value) if isinstance(value, str) else value
    return format_date(moment, format=style, locale=_locale(locale))


def moment(value: datetime | str, locale: str) -> str:
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return format_datetime(when, format="medium", locale=_locale(locale))


def month_name(year: int, month: int, locale: str) -> str:
    return format_date(date(year, month, 1), format="LLLL y", locale=_locale(locale))


def weekday_names(locale: str) -> list[str]:
    """Monday first, abbreviated."""
    names = _locale(locale).days["format"]["abbreviated"]
    return [names[index] for index in range(7)]
