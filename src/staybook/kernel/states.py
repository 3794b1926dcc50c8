"""State machines as enums: the states, their one transition table, and the CHECK that stores them.

A context writes its states once, as a `State` enum, and which state may follow which once,
as a `Transitions` table over that enum. Everything else is derived from those two: the
database's CHECK constraint (`State.check_constraint`), the statuses a change may start from
(`Transitions.sources`), the terminal states, and the table its docs show (`markdown`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Generic, TypeVar

from staybook.kernel.errors import Conflict


class State(StrEnum):
    """Base of a state enum: members are their stored spelling (`str(State.X) == "x"`)."""

    @classmethod
    def check_constraint(cls, column: str) -> str:
        """The CHECK expression that admits exactly this enum's values in `column`."""
        return f"{column} IN ({cls.sql_list()})"

    @classmethod
    def sql_list(cls, states: Iterable[State] | None = None) -> str:
        """`'a', 'b'`: the values (all, or `states`) as SQL literals, for IN lists in SQL text."""
        return ", ".join(f"'{state.value}'" for state in (cls if states is None else states))


class IllegalTransition(Conflict):
    """A change the state machine does not allow (409: the thing is no longer in a state for it)."""

    code, title = "illegal-transition", "Not allowed in this state"


S = TypeVar("S", bound=State)


class Transitions(Generic[S]):
    """Which state may follow which, for one `State` enum; every state of the enum has a row."""

    def __init__(self, states: type[S], table: Mapping[S, Iterable[S]]) -> None:
        missing = set(states) - set(table)
        if missing:
            raise ValueError(f"{states.__name__}: no row for {sorted(missing)}")
        self.states = states
        self._table: dict[S, frozenset[S]] = {states(state): frozenset(map(states, table[state])) for state in states}

    def targets(self, state: S | str) -> frozenset[S]:
        """The states that may follow `state`."""
        return self._table[self.states(state)]

    def sources(self, state: S | str) -> tuple[S, ...]:
        """The states `state` may follow (the table read backwards), in enum order."""
        wanted = self.states(state)
        return tuple(before for before, after in self._table.items() if wanted in after)

    def can(self, current: S | str, wanted: S | str) -> bool:
        return self.states(wanted) in self._table[self.states(current)]

    def require(self, current: S | str, wanted: S | str) -> S:
        """`wanted` (as the enum) if it may follow `current`, else IllegalTransition."""
        if not self.can(current, wanted):
            name = self.states.__name__
            raise IllegalTransition(
                f"a {current} {name} cannot become {wanted}", state=str(current), wanted=str(wanted)
            )
        return self.states(wanted)

    @property
    def terminal(self) -> frozenset[S]:
        """States nothing follows."""
        return frozenset(state for state, after in self._table.items() if not after)

    def items(self) -> Iterable[tuple[S, frozenset[S]]]:
        return self._table.items()

    def markdown(self) -> str:
        """The table as docs show it: one row per state, its successors in enum order."""
        order = list(self.states)
        rows = ["| from | may become |", "|---|---|"]
        for state, after in self._table.items():
            targets = ", ".join(f"`{s}`" for s in sorted(after, key=order.index)) or "— (terminal)"
            rows.append(f"| `{state}` | {targets} |")
        return "\n".join(rows)
