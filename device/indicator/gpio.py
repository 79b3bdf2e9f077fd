"""The gate's indicator on GPIO: LEDs, a buzzer and an optional door relay, driven by gpiozero,
and the door's inputs (a fire alarm, a manual-release button; door.py).

`GpioIndicator` plays the patterns of patterns.py on one background thread that waits on a
`threading.Event`, so `show()` returns at once and `close()` stops at once. Tests pass
`run_thread=False` and a fake clock and call `update()` themselves; the pins come from the
`pin_factory` passed in (gpiozero's MockFactory in tests), never from a global.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gpiozero import LED, Buzzer, OutputDevice

from device.indicator.base import IndicatorState, Output, Release, VerdictFamily, verdict_family
from device.indicator.door import DoorFail, DoorInputs, log_release, release_level
from device.indicator.patterns import (
    STATE_PATTERNS,
    SWITCH_ORDER,
    Pattern,
    PatternPlayer,
    verdict_pattern,
)
from protocol.verdicts import Reason, VerdictStatus

log = logging.getLogger(__name__)

BCM_PINS = range(28)  # GPIO0-27 on the 40-pin header


@dataclass(frozen=True)
class IndicatorPins:
    """BCM GPIO numbers of the gate's outputs and the door's inputs; None leaves one out.
    `door_fail` is how the lock behaves without power (door.py: what the relay does)."""

    green: int = 17
    red: int = 27
    buzzer: int | None = 22
    relay: int | None = None
    active_high: bool = True
    door_fail: DoorFail = "secure"
    fire_alarm: int | None = None
    release_button: int | None = None

    def __post_init__(self) -> None:
        used: dict[int, str] = {}
        for role, pin in self.by_role().items():
            if pin not in BCM_PINS:
                raise ValueError(f"{role} pin {pin} is not a GPIO number (BCM 0-27)")
            if pin in used:
                raise ValueError(f"pin {pin} is used for both {used[pin]} and {role}")
            used[pin] = role
        if self.door_fail not in ("secure", "safe"):
            raise ValueError(f"door_fail is 'secure' or 'safe', not {self.door_fail!r}")
        inputs = [name for name in ("fire_alarm", "release_button") if getattr(self, name)]
        if inputs and self.relay is None:
            raise ValueError(f"a {inputs[0]} pin releases the door: it needs a relay pin")

    def by_role(self) -> dict[str, int]:
        roles = {
            "green": self.green,
            "red": self.red,
            "buzzer": self.buzzer,
            "relay": self.relay,
            "fire_alarm": self.fire_alarm,
            "release_button": self.release_button,
        }
        return {role: pin for role, pin in roles.items() if pin is not None}


def make_outputs(pins: IndicatorPins, pin_factory: Any) -> dict[Output, Any]:
    """gpiozero devices for the configured pins, all off; on failure none stays reserved."""
    kinds: dict[Output, tuple[int | None, type[OutputDevice]]] = {
        Output.GREEN: (pins.green, LED),
        Output.RED: (pins.red, LED),
        Output.BUZZER: (pins.buzzer, Buzzer),
        Output.RELAY: (pins.relay, OutputDevice),
    }
    outputs: dict[Output, Any] = {}
    try:
        for output, (pin, kind) in kinds.items():
            if pin is not None:
                # A fail-safe lock is held locked by an energised relay, from the first moment.
                energised = output is Output.RELAY and pins.door_fail == "safe"
                outputs[output] = kind(
                    pin,
                    active_high=pins.active_high,
                    initial_value=energised,
                    pin_factory=pin_factory,
                )
    except Exception:
        close_all(outputs.values())
        raise
    return outputs


def close_all(devices: Iterable[Any]) -> None:
    for device in devices:
        device.close()


class GpioIndicator:
    """LEDs, buzzer and relay on gpiozero, driven by one pattern-player thread; the door's inputs
    hold it released over the patterns (`on_release(release, active)` hears of each, after the
    pins changed, from gpiozero's thread)."""

    def __init__(
        self,
        pins: IndicatorPins,
        *,
        pin_factory: Any,
        relay_seconds: float = 3.0,
        on_release: Callable[[Release, bool], None] = lambda release, active: None,
        clock: Callable[[], float] = time.monotonic,
        run_thread: bool = True,
    ) -> None:
        if not relay_seconds > 0:
            raise ValueError(f"relay_seconds must be positive, not {relay_seconds!r}")
        relay_time = relay_seconds if pins.relay is not None else 0.0
        self.patterns = {family: verdict_pattern(family, relay_time) for family in VerdictFamily}
        # Each verdict's pattern looked up once, here: `show` runs before anything else a scan
        # does, on code that is cold in the CPU's caches, so it does one dict lookup there.
        self._verdict_patterns = {
            (status, reason): self.patterns[verdict_family(status, reason)]
            for status in VerdictStatus
            for reason in Reason
        }
        self.state = IndicatorState.IDLE  # the background asked for (set_state)
        self._looping = IndicatorState.IDLE  # the background playing: a fire alarm's, over it
        self._relay_seconds = relay_seconds
        self._has_relay = pins.relay is not None
        self._on_release = on_release
        self._clock = clock
        self._outputs = make_outputs(pins, pin_factory)
        # Each output's pin and the level that lights it (for the relay: releases the door),
        # written directly on the hot path: gpiozero's `value` setter adds a blink check and four
        # calls per write, which matter between a code's decode and its light (the devices still
        # own and release the pins).
        self._levels = {
            output: (device.pin, pins.active_high) for output, device in self._outputs.items()
        }
        if Output.RELAY in self._outputs:
            relay_pin = self._outputs[Output.RELAY].pin
            self._levels[Output.RELAY] = (
                relay_pin,
                release_level(pins.door_fail, pins.active_high),
            )
        self._player = PatternPlayer(clock)
        self._lit: frozenset[Output] = frozenset()
        # Why the door is held released besides the pattern: until a monotonic time, or (None)
        # for as long as the input stays active.
        self._holds: dict[Release, float | None] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        try:
            self._inputs = DoorInputs(
                fire_alarm=pins.fire_alarm,
                release_button=pins.release_button,
                pin_factory=pin_factory,
                on_change=self._door_input,
            )
        except Exception:
            close_all(self._outputs.values())
            raise
        if self._inputs.fire_alarm_active():  # an alarm already on at start holds the door now
            self._door_input(Release.FIRE_ALARM, True)
        self._thread: threading.Thread | None = None
        if run_thread:
            self._thread = threading.Thread(target=self._run, name="indicator", daemon=True)
            self._thread.start()

    def show(self, status: VerdictStatus, reason: Reason) -> None:
        pattern = self._verdict_patterns[status, reason]
        with self._lock:
            if self._closed:
                return
            self._player.play(pattern)
            # The first step lights now, in the caller: a pin write (with the relay if a
            # release holds it).
            first = pattern[0].on | self._held_locked()[0] if self._holds else pattern[0].on
            if first != self._lit:
                self._light(first)
        self._wake.set()  # the thread plays the rest

    def play(self, pattern: Pattern) -> None:
        """Play `pattern` once from now, as a verdict plays (identify, the self-test): the
        next verdict replaces it."""
        with self._lock:
            if self._closed:
                return
            self._player.play(pattern)
            self._update_locked()
        self._wake.set()

    @property
    def outputs(self) -> frozenset[Output]:
        """The outputs this gate has (its config names a pin for)."""
        return frozenset(self._outputs)

    def set_state(self, state: IndicatorState) -> None:
        with self._lock:
            if self._closed or state == self.state:
                return  # the same state again must not restart its blinking
            self.state = state
            self._loop_locked()
            self._update_locked()
        self._wake.set()

    def release(self, release: Release = Release.DASHBOARD) -> bool:
        """Release the door for `relay_seconds`, as the manual-release button does (logged,
        told to `on_release`). False, and nothing done, when this gate has no relay."""
        if not self._has_relay or release is Release.FIRE_ALARM:
            return False
        self._door_input(release, True)
        return True

    @property
    def door_held(self) -> frozenset[Release]:
        """What holds the door released now, besides a granted verdict's pattern."""
        with self._lock:
            self._held_locked()
            return frozenset(self._holds)

    def _door_input(self, release: Release, active: bool) -> None:
        with self._lock:
            if self._closed:
                return
            if release is Release.FIRE_ALARM and not active:
                self._holds.pop(release, None)
            elif release is Release.FIRE_ALARM:
                self._holds[release] = None
            else:
                self._holds[release] = self._clock() + self._relay_seconds
            self._loop_locked()
            self._update_locked()
        self._wake.set()
        log_release(release, active, self._relay_seconds)
        try:
            self._on_release(release, active)
        except Exception:  # the door is already released: a failing record must not undo it
            log.exception("door: the release was not recorded")

    def _loop_locked(self) -> None:
        looping = IndicatorState.FIRE_ALARM if Release.FIRE_ALARM in self._holds else self.state
        if looping != self._looping:
            self._looping = looping
            self._player.loop(STATE_PATTERNS[looping])

    def _held_locked(self) -> tuple[frozenset[Output], float | None]:
        """The relay if a hold is on, and the seconds until the next hold ends (None: none)."""
        now = self._clock()
        for release, until in list(self._holds.items()):
            if until is not None and until <= now:
                del self._holds[release]
        if not self._holds:
            return frozenset(), None
        ends = [until - now for until in self._holds.values() if until is not None]
        return frozenset({Output.RELAY}), min(ends, default=None)

    def update(self) -> float | None:
        """Light what is due now; return seconds until the next change (None: none planned).

        The background thread calls this; with run_thread=False the caller does.
        """
        with self._lock:
            return None if self._closed else self._update_locked()

    def close(self) -> None:
        self._inputs.close()  # outside the lock: gpiozero may be calling `_door_input` now
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._light(frozenset())
            close_all(self._outputs.values())
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _update_locked(self) -> float | None:
        on, seconds_left = self._player.current()
        held, hold_left = self._held_locked()
        on |= held
        if on != self._lit:
            self._light(on)
        if hold_left is not None and (seconds_left is None or hold_left < seconds_left):
            return hold_left
        return seconds_left

    def _light(self, on: frozenset[Output]) -> None:
        # What comes on first, lights before sounds (SWITCH_ORDER), then what goes off: the
        # person looks for the new light, and a verdict that replaces another has both to do.
        lit, levels = self._lit, self._levels
        for output in SWITCH_ORDER:
            if output in on and output not in lit and output in levels:
                pin, on_level = levels[output]
                pin.state = on_level
        for output in SWITCH_ORDER:
            if output in lit and output not in on and output in levels:
                pin, on_level = levels[output]
                pin.state = not on_level
        self._lit = on

    def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                delay = self.update()
            except Exception:  # a pin that fails must not end the indicator for good
                log.exception("indicator: cannot drive the outputs")
                delay = 1.0
            if self._closed:
                return
            self._wake.wait(delay)
