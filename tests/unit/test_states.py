"""kernel.states: the enum base, the transition table, the CHECK it generates (no I/O)."""

from __future__ import annotations

import pytest

from staybook.kernel.errors import Conflict
from staybook.kernel.states import IllegalTransition, State, Transitions


class Light(State):
    RED = "red"
    GREEN = "green"
    AMBER = "amber"
    OFF = "off"


LIGHTS = Transitions(
    Light,
    {
        Light.RED: {Light.GREEN, Light.OFF},
        Light.GREEN: {Light.AMBER, Light.OFF},
        Light.AMBER: {Light.RED, Light.AMBER},
        Light.OFF: set(),
    },
)


def test_members_are_their_stored_spelling():
    assert Light.RED == "red" and str(Light.AMBER) == "amber" and f"{Light.OFF}" == "off"
    assert Light("green") is Light.GREEN


def test_check_constraint_lists_exactly_the_values_in_order():
    assert Light.check_constraint("colour") == "colour IN ('red', 'green', 'amber', 'off')"
    assert Light.sql_list([Light.AMBER, Light.RED]) == "'amber', 'red'"


def test_can_and_require_follow_the_table_for_every_pair():
    for current in Light:
        for wanted in Light:
            allowed = wanted in LIGHTS.targets(current)
            assert LIGHTS.can(current, wanted) is allowed
            assert LIGHTS.can(str(current), str(wanted)) is allowed  # stored strings work too
            if allowed:
                assert LIGHTS.require(current, wanted) is wanted
            else:
                with pytest.raises(IllegalTransition) as raised:
                    LIGHTS.require(current, wanted)
                assert raised.value.extensions == {"state": str(current), "wanted": str(wanted)}


def test_an_illegal_transition_is_a_conflict():
    assert issubclass(IllegalTransition, Conflict) and IllegalTransition.status == 409


def test_sources_read_the_table_backwards_and_terminal_states_have_no_successor():
    assert LIGHTS.sources(Light.AMBER) == (Light.GREEN, Light.AMBER)
    assert LIGHTS.sources("off") == (Light.RED, Light.GREEN)
    assert LIGHTS.sources(Light.RED) == (Light.AMBER,)
    assert LIGHTS.terminal == {Light.OFF}


def test_a_table_must_have_a_row_for_every_state():
    with pytest.raises(ValueError, match="off"):
        Transitions(Light, {Light.RED: set(), Light.GREEN: set(), Light.AMBER: set()})


def test_an_unknown_state_is_refused():
    with pytest.raises(ValueError):
        LIGHTS.can("blue", "red")


def test_markdown_lists_each_state_and_its_successors_in_enum_order():
    assert LIGHTS.markdown().splitlines() == [
        "| from | may become |",
        "|---|---|",
        "| `red` | `green`, `off` |",
        "| `green` | `amber`, `off` |",
        "| `amber` | `red`, `amber` |",
        "| `off` | — (terminal) |",
    ]
