"""The indicator on gpiozero's own MockFactory pins, played with a fake clock (no sleeping)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from device.indicator.base import (
    Indicator,
    IndicatorState,
    Output,
    Release,
    TeeIndicator,
    VerdictFamily,
)
from device.indicator.gpio import GpioIndicator, IndicatorPins
from device.indicator.patterns import (
    DENIED_PATTERN,
    duration,
    step,
    verdict_pattern,
    with_output_for,
)
from device.indicator.terminal import TerminalIndicator
from protocol.verdicts import Reason, VerdictStatus

GREEN, RED, BUZZER, RELAY = 17, 27, 22, 23
NAMES = {GREEN: "green", RED: "red", BUZZER: "buzzer", RELAY: "relay"}
Timeline = list[tuple[float, set[str]]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


class Gate:
    """A GpioIndicator on MockFactory pins, with the test holding the clock."""

    def __init__(
        self,
        *,
        relay: int | None = RELAY,
        active_high: bool = True,
        on_release: Callable[[Release, bool], None] = lambda release, active: None,
        pin_class: type[MockPin] = MockPin,
        **door: Any,
    ) -> None:
        self.factory = MockFactory(pin_class=pin_class)
        self.clock = FakeClock()
        self.pins = IndicatorPins(
            green=GREEN, red=RED, buzzer=BUZZER, relay=relay, active_high=active_high, **door
        )
        self.indicator = GpioIndicator(
            self.pins,
            pin_factory=self.factory,
            relay_seconds=3.0,
            on_release=on_release,
            clock=self.clock,
            run_thread=False,
        )

    def pin(self, number: int) -> MockPin:
        return self.factory.pin(number)

    def states(self, number: int) -> list[bool]:
        """Every level the pin was driven to, from its first."""
        return [bool(change.state) for change in self.pin(number).states]

    def lit(self) -> set[str]:
        on_level = self.pins.active_high
        return {
            name
            for number, name in NAMES.items()
            if number in self.pins.by_role().values() and self.pin(number).state == on_level
        }

    def play(self, seconds: float) -> Timeline:
        """Run [now, now + seconds) of fake time; return (time, lit outputs) at each change."""
        start, end = self.clock.now, self.clock.now + seconds
        timeline: Timeline = []
        while True:
            delay = self.indicator.update()
            if not timeline or timeline[-1][1] != self.lit():
                timeline.append((round(self.clock.now - start, 6), self.lit()))
            if delay is None or self.clock.now + delay >= end - 1e-9:
                break
            self.clock.now += delay
        self.clock.now = end
        return timeline


@pytest.fixture
def gate() -> Iterator[Gate]:
    made = Gate()
    yield made
    made.indicator.close()


# --- verdict patterns ----------------------------------------------------------------------


def test_recorded_lights_green_half_a_second_with_one_beep(gate: Gate) -> None:
    gate.indicator.show(VerdictStatus.RECORDED, Reason.OK)
    assert gate.play(2.0) == [(0.0, {"green", "buzzer"}), (0.1, {"green"}), (0.5, set())]
    assert gate.states(GREEN) == [False, True, False]
    assert gate.states(BUZZER) == [False, True, False]
    assert gate.states(RED) == [False] and gate.states(RELAY) == [False]


def test_granted_lights_green_beeps_once_and_opens_the_relay_for_relay_seconds(
    gate: Gate,
) -> None:
    gate.indicator.show(VerdictStatus.GRANTED, Reason.OK)
    assert gate.play(5.0) == [
        (0.0, {"green", "buzzer", "relay"}),
        (0.1, {"green", "relay"}),
        (1.5, {"relay"}),
        (3.0, set()),
    ]
    assert gate.states(RELAY) == [False, True, False]
    assert gate.states(BUZZER) == [False, True, False]


def test_granted_without_a_relay_lights_green_for_one_and_a_half_seconds() -> None:
    gate = Gate(relay=None)
    gate.indicator.show(VerdictStatus.GRANTED, Reason.OK)
    assert gate.play(5.0) == [(0.0, {"green", "buzzer"}), (0.1, {"green"}), (1.5, set())]
    assert gate.states(RELAY) == [False], "pin 23 was never touched"
    gate.indicator.close()


def test_denied_lights_red_with_three_beeps_and_never_the_relay(gate: Gate) -> None:
    gate.indicator.show(VerdictStatus.DENIED, Reason.UNKNOWN_FORMAT)
    timeline = gate.play(3.0)
    assert timeline[0] == (0.0, {"red", "buzzer"})
    assert timeline[-1] == (1.5, set())
    assert all("red" in lit for _, lit in timeline[:-1]), "red stays on for the whole 1.5 s"
    assert gate.states(BUZZER) == [False, True, False, True, False, True, False]
    assert gate.states(RED) == [False, True, False]
    assert gate.states(RELAY) == [False] and gate.states(GREEN) == [False]


def test_a_new_verdict_replaces_the_playing_one_at_once(gate: Gate) -> None:
    gate.indicator.show(VerdictStatus.GRANTED, Reason.OK)
    gate.play(0.3)
    gate.indicator.show(VerdictStatus.DENIED, Reason.UNKNOWN_FORMAT)
    assert gate.lit() == {"red", "buzzer"}, "no wait for the green to finish"
    assert gate.play(3.0)[-1] == (1.5, set()), "the denied pattern runs its full length"
    assert gate.states(RELAY) == [False, True, False]


class OrderedPin(MockPin):
    """A MockPin that also notes, across all pins of its factory, the order of changes."""

    changes: ClassVar[list[tuple[str, bool]]] = []

    def _change_state(self, value: bool) -> bool:
        changed: bool = super()._change_state(value)
        if changed:
            self.changes.append((self.info.name, value))
        return changed


def test_the_light_comes_on_before_the_buzzer_and_before_the_old_light_goes_off() -> None:
    changes: list[tuple[str, bool]] = []
    pin_class = type("Pin", (OrderedPin,), {"changes": changes})
    indicator = GpioIndicator(
        IndicatorPins(), pin_factory=MockFactory(pin_class=pin_class), run_thread=False
    )
    changes.clear()
    indicator.show(VerdictStatus.DENIED, Reason.UNKNOWN_FORMAT)
    assert changes == [("GPIO27", True), ("GPIO22", True)], "red, then the beep"
    changes.clear()
    indicator.show(VerdictStatus.RECORDED, Reason.OK)
    assert changes == [("GPIO17", True), ("GPIO27", False)], "green on, then red off"
    indicator.close()


# --- background states ---------------------------------------------------------------------


def test_offline_blinks_red_briefly_every_two_seconds(gate: Gate) -> None:
    gate.indicator.set_state(IndicatorState.OFFLINE)
    assert gate.play(6.0) == [
        (0.0, set()),
        (1.9, {"red"}),
        (2.0, set()),
        (3.9, {"red"}),
        (4.0, set()),
        (5.9, {"red"}),
    ]
    assert gate.states(GREEN) == [False]


def test_fault_alternates_red_and_green_slowly(gate: Gate) -> None:
    gate.indicator.set_state(IndicatorState.FAULT)
    assert gate.play(2.0) == [
        (0.0, {"red"}),
        (0.5, {"green"}),
        (1.0, {"red"}),
        (1.5, {"green"}),
    ]


def test_idle_turns_everything_off_and_plans_no_change(gate: Gate) -> None:
    gate.indicator.set_state(IndicatorState.FAULT)
    gate.indicator.set_state(IndicatorState.IDLE)
    assert gate.lit() == set()
    assert gate.indicator.update() is None


def test_a_verdict_overrides_the_state_which_resumes_after_it(gate: Gate) -> None:
    gate.indicator.set_state(IndicatorState.OFFLINE)
    gate.play(1.95)
    assert gate.lit() == {"red"}, "mid heartbeat"
    gate.indicator.show(VerdictStatus.RECORDED, Reason.OK)
    assert gate.lit() == {"green", "buzzer"}, "the verdict takes over at once"
    assert gate.play(3.0) == [
        (0.0, {"green", "buzzer"}),
        (0.1, {"green"}),
        (0.5, set()),
        (2.4, {"red"}),  # the heartbeat starts over, dark part first
        (2.5, set()),
    ]


def test_setting_the_same_state_again_does_not_restart_it(gate: Gate) -> None:
    gate.indicator.set_state(IndicatorState.OFFLINE)
    gate.play(1.0)
    gate.indicator.set_state(IndicatorState.OFFLINE)
    assert gate.play(1.0) == [(0.0, set()), (0.9, {"red"})]


# --- never blocking, stopping at once ------------------------------------------------------


def test_show_returns_before_the_pattern_ends() -> None:
    factory, clock = MockFactory(), FakeClock()
    indicator = GpioIndicator(IndicatorPins(), pin_factory=factory, clock=clock)
    started = clock.now
    indicator.show(VerdictStatus.DENIED, Reason.UNKNOWN_FORMAT)
    assert clock.now == started, "show() did not wait on the clock"
    assert factory.pin(27).state, "the red light is on as show() returns"
    assert duration(indicator.patterns[VerdictFamily.DENIED]) == pytest.approx(1.5)
    indicator.close()


def test_the_player_thread_plays_a_pattern_to_its_end_on_the_real_clock() -> None:
    factory = MockFactory()
    indicator = GpioIndicator(IndicatorPins(buzzer=None), pin_factory=factory)
    indicator.show(VerdictStatus.RECORDED, Reason.OK)
    green = factory.pin(17)
    assert green.state
    deadline = time.monotonic() + 5.0
    while green.state and time.monotonic() < deadline:
        time.sleep(0.01)  # polling an observable condition under a deadline
    assert not green.state, "green went off after its 0.5 s"
    indicator.close()


def test_close_turns_everything_off_and_stops_the_thread_at_once() -> None:
    factory = MockFactory()
    threads_before = set(threading.enumerate())
    indicator = GpioIndicator(IndicatorPins(), pin_factory=factory)
    player_threads = set(threading.enumerate()) - threads_before
    assert len(player_threads) == 1, "one pattern-player thread"
    indicator.set_state(IndicatorState.FAULT)
    indicator.close()
    assert not any(thread.is_alive() for thread in player_threads), "joined at once"
    assert not factory.pin(17).state and not factory.pin(27).state
    indicator.close()  # twice is fine
    indicator.show(VerdictStatus.GRANTED, Reason.OK)  # and a late verdict is ignored, not a crash


# --- pins ----------------------------------------------------------------------------------


def test_a_pin_used_twice_is_rejected_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"^pin 17 is used for both green and buzzer$"):
        IndicatorPins(green=17, red=27, buzzer=17)


def test_a_pin_that_is_not_a_gpio_number_is_rejected() -> None:
    with pytest.raises(ValueError, match="relay pin 40 is not a GPIO number"):
        IndicatorPins(relay=40)


def test_active_low_outputs_are_driven_low_to_light() -> None:
    gate = Gate(active_high=False)
    assert gate.pin(GREEN).state, "off means a high pin"
    gate.indicator.show(VerdictStatus.RECORDED, Reason.OK)
    assert not gate.pin(GREEN).state
    gate.play(1.0)
    assert gate.states(GREEN) == [False, True, False, True]
    gate.indicator.close()


def test_devices_are_released_on_close_so_the_pins_can_be_used_again() -> None:
    factory = MockFactory()
    GpioIndicator(IndicatorPins(), pin_factory=factory, run_thread=False).close()
    GpioIndicator(IndicatorPins(), pin_factory=factory, run_thread=False).close()


# --- patterns as data ----------------------------------------------------------------------


def test_an_output_added_for_longer_than_the_pattern_extends_it() -> None:
    light = (step(0.1, Output.GREEN), step(0.4))
    split = with_output_for(light, Output.RELAY, 0.3)
    assert [s.on for s in split] == [{Output.GREEN, Output.RELAY}, {Output.RELAY}, set()]
    assert [s.seconds for s in split] == pytest.approx([0.1, 0.2, 0.2])
    assert with_output_for(light, Output.RELAY, 1.0) == (
        step(0.1, Output.GREEN, Output.RELAY),
        step(0.4, Output.RELAY),
        step(0.5, Output.RELAY),
    )


def test_every_verdict_pattern_has_the_documented_length() -> None:
    assert duration(verdict_pattern(VerdictFamily.RECORDED)) == pytest.approx(0.5)
    assert duration(verdict_pattern(VerdictFamily.RESCAN)) == pytest.approx(1.0)
    assert duration(verdict_pattern(VerdictFamily.GRANTED)) == pytest.approx(1.5)
    assert duration(verdict_pattern(VerdictFamily.GRANTED, 3.0)) == pytest.approx(3.0)
    assert verdict_pattern(VerdictFamily.DENIED, 3.0) == DENIED_PATTERN
    for family in (VerdictFamily.RECORDED, VerdictFamily.RESCAN, VerdictFamily.DENIED):
        assert not any(Output.RELAY in s.on for s in verdict_pattern(family, 3.0)), family


# --- tee ----------------------------------------------------------------------


def test_tee_forwards_to_every_indicator_even_when_one_fails() -> None:
    class Broken:
        def show(self, status: VerdictStatus, reason: Reason) -> None:
            raise BrokenPipeError("terminal went away")

        def set_state(self, state: IndicatorState) -> None:
            raise BrokenPipeError("terminal went away")

        def close(self) -> None:
            pass

    factory, out = MockFactory(), io.StringIO()
    gpio = GpioIndicator(IndicatorPins(), pin_factory=factory, run_thread=False)
    tee: Indicator = TeeIndicator(Broken(), gpio, TerminalIndicator(out, color=False))
    with pytest.raises(BrokenPipeError):
        tee.show(VerdictStatus.RECORDED, Reason.OK)
    assert factory.pin(17).state, "the LED lit although the first indicator failed"
    assert out.getvalue() == "● RECORDED  green 0.5 s, 1 beep\n"
    tee.close()
    assert not factory.pin(17).state
