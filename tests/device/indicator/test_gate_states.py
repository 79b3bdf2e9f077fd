"""Every background state has a pattern of its own, on gpiozero's MockFactory pins with a fake
clock; a verdict still plays over any of them; the states come from the gate's health."""

from __future__ import annotations

import pytest

from device.indicator.base import IndicatorState, background_state
from device.system.health import Fault, Health, LinkState
from protocol.verdicts import Reason, VerdictStatus
from tests.device.indicator.test_gpio import Gate, Timeline


def one_period(state: IndicatorState) -> Timeline:
    gate = Gate(relay=None)
    try:
        gate.indicator.set_state(state)
        return gate.play(2.0)
    finally:
        gate.indicator.close()


EXPECTED: dict[IndicatorState, Timeline] = {
    IndicatorState.IDLE: [(0.0, set())],
    IndicatorState.CLOCK_UNSYNCED: [(0.0, set()), (1.9, {"green"})],
    IndicatorState.OFFLINE: [(0.0, set()), (1.9, {"red"})],
    IndicatorState.NO_NETWORK: [
        (0.0, set()),
        (1.65, {"red"}),
        (1.75, set()),
        (1.9, {"red"}),
    ],
    IndicatorState.CREDENTIALS_REFUSED: [
        (0.0, set()),
        (1.4, {"red"}),
        (1.5, set()),
        (1.65, {"red"}),
        (1.75, set()),
        (1.9, {"red"}),
    ],
    IndicatorState.FAULT: [(0.0, {"red"}), (0.5, {"green"}), (1.0, {"red"}), (1.5, {"green"})],
    IndicatorState.CONFIG_ERROR: [(0.0, {"red"}), (1.8, set())],
    IndicatorState.SETUP: [(0.0, {"green"}), (1.0, set())],
    IndicatorState.ENROLMENT_RETRY: [(0.0, {"green"}), (1.0, set()), (1.4, {"red"}), (1.6, set())],
    IndicatorState.ENROLMENT_REFUSED: [(0.0, {"red"}), (1.0, set())],
    IndicatorState.FIRE_ALARM: [
        (seconds + dark, set() if dark else {"green", "red"})
        for seconds in (0.0, 0.5, 1.0, 1.5)
        for dark in (0.0, 0.25)
    ],
}


@pytest.mark.parametrize("state", list(EXPECTED), ids=str)
def test_each_gate_state_plays_its_documented_pattern(state: IndicatorState) -> None:
    assert one_period(state) == EXPECTED[state]


def test_no_two_gate_states_look_alike() -> None:
    timelines = [repr(one_period(state)) for state in IndicatorState]
    assert len(set(timelines)) == len(IndicatorState)


def test_enrolling_flickers_green() -> None:
    timeline = one_period(IndicatorState.ENROLLING)
    assert [lit for _, lit in timeline[:4]] == [{"green"}, set(), {"green"}, set()]
    assert all(lit <= {"green"} for _, lit in timeline)


@pytest.mark.parametrize(
    "state", [IndicatorState.SETUP, IndicatorState.CONFIG_ERROR, IndicatorState.NO_NETWORK]
)
@pytest.mark.parametrize(
    ("status", "reason", "colours"),
    [
        (VerdictStatus.GRANTED, Reason.OK, {"green"}),
        (VerdictStatus.RECORDED, Reason.OK, {"green"}),
        (VerdictStatus.RECORDED, Reason.INVALID, {"green", "red"}),  # amber
        (VerdictStatus.DENIED, Reason.NOT_ALLOWED, {"red"}),
    ],
    ids=["granted", "recorded", "rescan", "denied"],
)
def test_a_verdict_plays_over_any_state_and_the_state_resumes(
    state: IndicatorState, status: VerdictStatus, reason: Reason, colours: set[str]
) -> None:
    gate = Gate(relay=None)
    try:
        gate.indicator.set_state(state)
        gate.play(0.5)
        gate.indicator.show(status, reason)
        assert gate.lit() == {*colours, "buzzer"}, "the verdict's own light and beep, at once"
        gate.play(1.6)  # every verdict pattern is over by then
        resumed = gate.play(4.0)
        assert {frozenset(lit) for _, lit in resumed} == {
            frozenset(lit) for _, lit in EXPECTED[state]
        }
    finally:
        gate.indicator.close()


def health(link: LinkState = LinkState.UP, synced: bool = True, *faults: Fault) -> Health:
    current = Health()
    current.set_link(link)
    current.set_clock_synced(synced)
    for fault in faults:
        current.set_fault(fault)
    return current


@pytest.mark.parametrize(
    ("current", "state"),
    [
        (health(), IndicatorState.IDLE),
        (health(LinkState.UP, False), IndicatorState.CLOCK_UNSYNCED),
        (health(LinkState.CONNECTING), IndicatorState.OFFLINE),
        (health(LinkState.UNREACHABLE), IndicatorState.OFFLINE),
        (health(LinkState.NO_NETWORK, False), IndicatorState.NO_NETWORK),
        (health(LinkState.REFUSED), IndicatorState.CREDENTIALS_REFUSED),
        (health(LinkState.REFUSED, True, Fault.CAMERA), IndicatorState.FAULT),
        (
            health(LinkState.NO_NETWORK, True, Fault.CAMERA, Fault.FIRE_ALARM),
            IndicatorState.FIRE_ALARM,
        ),
    ],
)
def test_the_background_state_follows_the_gates_health(
    current: Health, state: IndicatorState
) -> None:
    assert background_state(current) is state


def test_a_link_that_comes_up_clears_the_reason_it_was_down() -> None:
    current = health(LinkState.REFUSED)
    current.set_online(True)
    assert background_state(current) is IndicatorState.IDLE
    current.set_online(False)  # a drop with no reason known
    assert background_state(current) is IndicatorState.OFFLINE
