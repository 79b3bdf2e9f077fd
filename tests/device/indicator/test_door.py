"""The verdict families and the door, on gpiozero's own MockFactory pins with a fake clock: each
family's light and sound, the relay released only on `granted`, fail-secure and fail-safe relay
levels, the fire alarm and the manual-release button."""

from __future__ import annotations

import itertools

import pytest
from gpiozero.pins.mock import MockPin

from device.indicator.base import IndicatorState, Release, VerdictFamily, verdict_family
from device.indicator.gpio import IndicatorPins
from protocol.verdicts import Reason, VerdictStatus
from tests.device.indicator.test_gpio import BUZZER, GREEN, RED, RELAY, Gate

FIRE, BUTTON = 5, 6
EVERY_VERDICT = list(itertools.product(VerdictStatus, Reason))


# --- the families ----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "reason"), EVERY_VERDICT, ids=str)
def test_every_status_and_reason_has_one_family(status: VerdictStatus, reason: Reason) -> None:
    family = verdict_family(status, reason)
    if status is VerdictStatus.GRANTED:
        assert family is VerdictFamily.GRANTED
    elif status is VerdictStatus.DENIED:
        assert family is VerdictFamily.DENIED
    elif reason is Reason.OK:
        assert family is VerdictFamily.RECORDED
    else:
        assert family is VerdictFamily.RESCAN, "log mode asks for a failed code again"


@pytest.mark.parametrize(
    "reason", [Reason.INVALID, Reason.BAD_SIGNATURE, Reason.EXPIRED, Reason.NOT_YET_VALID]
)
def test_rescan_is_amber_for_a_second_with_two_slow_beeps(reason: Reason) -> None:
    gate = Gate()
    gate.indicator.show(VerdictStatus.RECORDED, reason)
    assert gate.play(3.0) == [
        (0.0, {"green", "red", "buzzer"}),
        (0.1, {"green", "red"}),
        (0.4, {"green", "red", "buzzer"}),
        (0.5, {"green", "red"}),
        (1.0, set()),
    ]
    assert gate.states(BUZZER) == [False, True, False, True, False]
    assert gate.states(RELAY) == [False], "the door never moves for a code shown again"
    gate.indicator.close()


def test_the_four_families_look_and_sound_different() -> None:
    looks = []
    for status, reason in [
        (VerdictStatus.GRANTED, Reason.OK),
        (VerdictStatus.RECORDED, Reason.OK),
        (VerdictStatus.RECORDED, Reason.EXPIRED),
        (VerdictStatus.DENIED, Reason.NOT_ALLOWED),
    ]:
        gate = Gate(relay=None)
        gate.indicator.show(status, reason)
        looks.append(repr(gate.play(3.0)))
        gate.indicator.close()
    assert len(set(looks)) == 4


@pytest.mark.parametrize(("status", "reason"), EVERY_VERDICT, ids=str)
@pytest.mark.parametrize("fail", ["secure", "safe"])
def test_the_relay_releases_the_door_on_granted_only(
    status: VerdictStatus, reason: Reason, fail: str
) -> None:
    gate = Gate(door_fail=fail)
    locked = fail == "safe"  # the relay's level at rest, active high: energised for fail-safe
    assert gate.pin(RELAY).state == locked
    before = len(gate.states(RELAY))
    gate.indicator.show(status, reason)
    gate.play(5.0)
    changes = gate.states(RELAY)[before:]
    if status is VerdictStatus.GRANTED:
        assert changes == [not locked, locked], "released for relay_seconds, then locked"
    else:
        assert changes == [], f"{status} {reason} never touches the relay"
    gate.indicator.close()


# --- fail-secure and fail-safe ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fail", "active_high", "at_rest", "released"),
    [
        ("secure", True, False, True),  # energise to release
        ("secure", False, True, False),  # an active-low relay board: energised is a low pin
        ("safe", True, True, False),  # energised holds the lock; release de-energises it
        ("safe", False, False, True),
    ],
)
def test_the_relay_level_at_rest_and_on_release_follows_the_fail_mode(
    fail: str, active_high: bool, at_rest: bool, released: bool
) -> None:
    gate = Gate(door_fail=fail, active_high=active_high)
    assert gate.pin(RELAY).state == at_rest, "from the first moment"
    gate.indicator.show(VerdictStatus.GRANTED, Reason.OK)
    assert gate.pin(RELAY).state == released, "released with the green light"
    gate.play(2.9)
    assert gate.pin(RELAY).state == released, "for relay_seconds"
    gate.play(0.2)
    assert gate.pin(RELAY).state == at_rest, "locked again after relay_seconds"
    gate.indicator.close()


def test_a_fail_secure_door_stays_locked_when_the_gate_closes_its_pins() -> None:
    gate = Gate(door_fail="secure")
    gate.indicator.show(VerdictStatus.GRANTED, Reason.OK)
    gate.indicator.close()
    assert gate.states(RELAY)[-1] is False, "de-energised: a fail-secure lock holds"


# --- the fire alarm --------------------------------------------------------------------------


def test_the_fire_alarm_holds_the_door_released_while_active_then_locks_it_again() -> None:
    heard: list[tuple[Release, bool]] = []
    gate = Gate(fire_alarm=FIRE, on_release=lambda *change: heard.append(change))
    gate.indicator.set_state(IndicatorState.OFFLINE)
    assert not gate.pin(RELAY).state
    gate.pin(FIRE).drive_low()  # the fire panel's contact closes to ground
    assert gate.pin(RELAY).state, "released at once"
    assert heard == [(Release.FIRE_ALARM, True)]
    assert gate.indicator.door_held == {Release.FIRE_ALARM}
    timeline = gate.play(2.0)
    assert timeline[:3] == [
        (0.0, {"green", "red", "relay"}),
        (0.25, {"relay"}),
        (0.5, {"green", "red", "relay"}),
    ], "amber flashing over the offline state, the door released throughout"
    gate.indicator.show(VerdictStatus.DENIED, Reason.NOT_ALLOWED)
    gate.play(600.0)
    assert gate.pin(RELAY).state, "a verdict, or ten minutes, do not lock a door a fire holds"
    gate.pin(FIRE).drive_high()
    assert not gate.pin(RELAY).state, "locked again as soon as the alarm ends"
    assert heard == [(Release.FIRE_ALARM, True), (Release.FIRE_ALARM, False)]
    assert gate.play(2.0) == [(0.0, set()), (1.9, {"red"})], "the offline state is back"
    assert gate.states(RELAY) == [False, True, False]
    gate.indicator.close()


class ClosedContactPin(MockPin):
    """gpiozero's MockPin wired to a contact already closed to ground: the pull-up an input sets
    cannot raise it (gpiozero's own MockPin would go high)."""

    def _set_pull(self, value: str) -> None:
        super()._set_pull(value)
        self.drive_low()


def test_a_fire_alarm_active_as_the_gate_starts_releases_the_door_at_once() -> None:
    heard: list[tuple[Release, bool]] = []
    gate = Gate(
        fire_alarm=FIRE,
        door_fail="safe",
        on_release=lambda *change: heard.append(change),
        pin_class=ClosedContactPin,
    )
    assert not gate.pin(RELAY).state, "fail-safe, released: de-energised"
    assert heard == [(Release.FIRE_ALARM, True)]
    assert gate.lit() >= {"green", "red"}, "the fire alarm's amber"
    gate.indicator.close()


def test_the_fire_alarm_light_is_unlike_any_other_state() -> None:
    gate = Gate(fire_alarm=FIRE, relay=RELAY)
    gate.pin(FIRE).drive_low()
    alarm = gate.play(2.0)
    gate.indicator.close()
    for state in IndicatorState:
        if state is IndicatorState.FIRE_ALARM:
            continue
        other = Gate()
        other.indicator.set_state(state)
        assert other.play(2.0) != [(t, lit - {"relay"}) for t, lit in alarm], state
        other.indicator.close()


# --- the manual-release button ---------------------------------------------------------------


def test_the_release_button_releases_the_door_for_relay_seconds() -> None:
    heard: list[tuple[Release, bool]] = []
    gate = Gate(release_button=BUTTON, on_release=lambda *change: heard.append(change))
    gate.pin(BUTTON).drive_low()
    gate.pin(BUTTON).drive_high()
    assert gate.pin(RELAY).state and heard == [(Release.BUTTON, True)]
    assert gate.play(5.0) == [(0.0, {"relay"}), (3.0, set())], "no light: the guard pressed it"
    assert gate.states(GREEN) == [False] and gate.states(RED) == [False]
    gate.indicator.close()


def test_a_granted_verdict_does_not_cut_short_a_release_by_the_button() -> None:
    gate = Gate(release_button=BUTTON)
    gate.pin(BUTTON).drive_low()
    gate.play(2.0)
    gate.indicator.show(VerdictStatus.GRANTED, Reason.OK)
    assert gate.play(4.0)[-1] == (3.0, set()), "the verdict's own 3 s, from its showing"
    assert gate.states(RELAY) == [False, True, False], "one release, never a flicker"
    gate.indicator.close()


# --- pins ------------------------------------------------------------------------------------


def test_an_input_on_an_output_pin_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"^pin 23 is used for both relay and fire_alarm$"):
        IndicatorPins(relay=RELAY, fire_alarm=RELAY)
    with pytest.raises(ValueError, match="pin 5 is used for both fire_alarm and release_button"):
        IndicatorPins(relay=RELAY, fire_alarm=FIRE, release_button=FIRE)


def test_door_inputs_need_a_relay() -> None:
    with pytest.raises(ValueError, match="release_button pin releases the door: it needs a relay"):
        IndicatorPins(release_button=BUTTON)
