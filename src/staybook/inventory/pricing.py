"""Pricing rules and stay assessment: pure functions that turn a base price and rules into nightly prices.

Rules apply in order, each to the price the previous ones produced, so
"summer +30%" then "weekend +20%" gives a summer Saturday +56%. A date-range
price replaces the price (it is the host saying "this is the price then") and
later percentage rules still adjust it. Percentages round half up to whole
minor units; prices never go below zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal

from staybook.inventory.events import NightSnapshot

WEEKEND = frozenset({4, 5})  # Friday and Saturday nights (date.weekday()): the nights leisure guests book


@dataclass(frozen=True)
class WeekdayRule:
    """A percentage on some days of the week (0 = Monday), e.g. weekend nights +20%."""

    percent: int
    weekdays: frozenset[int] = WEEKEND
    kind: Literal["weekday"] = "weekday"

    def applies(self, night: date) -> bool:
        return night.weekday() in self.weekdays

    def adjust(self, night: date, amount: int) -> int:
        return apply_percent(amount, self.percent)


@dataclass(frozen=True)
class DateRangePrice:
    """A fixed price for the nights [start, end), e.g. a festival week."""

    start: date
    end: date
    amount: int
    kind: Literal["date_range"] = "date_range"

    def applies(self, night: date) -> bool:
        return self.start <= night < self.end

    def adjust(self, night: date, amount: int) -> int:
        return self.amount


@dataclass(frozen=True)
class SeasonalRule:
    """A percentage between two month-days every year, e.g. (6, 15)-(9, 1) +30%; may wrap over New Year."""

    percent: int
    start: tuple[int, int]  # (month, day), inclusive
    end: tuple[int, int]  # (month, day), exclusive
    kind: Literal["seasonal"] = "seasonal"

    def applies(self, night: date) -> bool:
        key = (night.month, night.day)
        if self.start <= self.end:
            return self.start <= key < self.end
        return key >= self.start or key < self.end

    def adjust(self, night: date, amount: int) -> int:
        return apply_percent(amount, self.percent)


PricingRule = WeekdayRule | DateRangePrice | SeasonalRule


def apply_percent(amount: int, percent: int) -> int:
    """`amount` changed by `percent` %, rounded half up to a whole minor unit, never negative."""
    return max(0, (amount * (100 + percent) + 50) // 100)


def nightly_price(base_amount: int, night: date, rules: Iterable[PricingRule]) -> int:
    amount = base_amount
    for rule in rules:
        if rule.applies(night):
            amount = rule.adjust(night, amount)
    return amount


def nightly_prices(base_amount: int, start: date, end: date, rules: Sequence[PricingRule]) -> dict[date, int]:
    """The price of every night in [start, end) after the rules."""
    return {
        night: nightly_price(base_amount, night, rules)
        for night in (start + timedelta(days=i) for i in range((end - start).days))
    }


@dataclass(frozen=True)
class Assessment:
    """Whether `units` rooms can be sold for a stay, and at what price."""

    available_units: int
    prices: list[tuple[date, int]]
    total_amount: int
    bookable: bool
    reasons: list[str] = field(default_factory=list)


def assess_stay(
    nights: Sequence[NightSnapshot],
    *,
    check_in: date,
    check_out: date,
    guests: int,
    max_guests: int,
    units: int = 1,
    on_sale: bool = True,
) -> Assessment:
    """Decides availability from the calendar rows of [check_in, check_out), mirroring the hold statement."""
    by_night = {n.night: n for n in nights}
    stay_nights = [check_in + timedelta(days=i) for i in range((check_out - check_in).days)]
    reasons: list[str] = []
    if not on_sale:
        reasons.append("room type not on sale")
    if guests > max_guests * units:
        reasons.append(f"at most {max_guests * units} guests")
    missing = [n for n in stay_nights if n not in by_night]
    if missing:
        reasons.append("not on sale: " + ", ".join(n.isoformat() for n in missing))
    closed = [n for n in stay_nights if n in by_night and by_night[n].closed]
    if closed:
        reasons.append("closed: " + ", ".join(n.isoformat() for n in closed))
    first = by_night.get(check_in)
    if first is not None and first.closed_to_arrival:
        reasons.append(f"closed to arrival on {check_in.isoformat()}")
    if first is not None and first.min_stay > len(stay_nights):
        reasons.append(f"minimum stay {first.min_stay} nights")
    open_nights = [by_night[n] for n in stay_nights if n in by_night and not by_night[n].closed]
    available = 0 if missing or closed else min(n.available for n in open_nights)
    if not missing and not closed and available < units:
        sold_out = [n.night.isoformat() for n in open_nights if n.available < units]
        reasons.append("sold out: " + ", ".join(sold_out))
    prices = [(n, by_night[n].price) for n in stay_nights if n in by_night]
    total = sum(price for _, price in prices) * units
    return Assessment(max(0, available), prices, total, not reasons, reasons)
