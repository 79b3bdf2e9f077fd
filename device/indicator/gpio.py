"""The gate's indicator on GPIO: LEDs, a buzzer and an optional door relay, driven by gpiozero.

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

from device.indicator.base import IndicatorState, Output
from device.indicator.patterns import (
    STATE_PATTERNS,
    SWITCH_ORDER,
    PatternPlayer,
    verdict_pattern,
)
from protocol.verdicts import VerdictStatus

log = logging.getLogger(__name__)

BCM_PINS = range(28)  # GPIO0-27 on the 40-pin header


@dataclass(frozen=True)
class IndicatorPins:
    """BCM GPIO numbers of the gate's outputs; None leaves an output out."""

    green: int = 17
    red: int = 27
    buzzer: int | None = 22
    relay: int | None = None
    active_high: bool = True

    def __post_init__(self) -> None:
        used: dict[int, str] = {}
        for role, pin in self.by_role().items():
            if pin not in BCM_PINS:
                raise ValueError(f"{role} pin {pin} is not a GPIO number (BCM 0-27)")
            if pin in used:
                raise ValueError(f"pin {pin} is used for both {used[pin]} and {role}")
            used[pin] = role

    def by_role(self) -> dict[str, int]:
        roles = {"green": self.green, "red": self.red, "buzzer": self.buzzer, "relay": self.relay}
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
                outputs[output] = kind(
                    pin, active_high=pins.active_high, initial_value=False, pin_factory=pin_factory
                )
    except Exception:
        close_all(outputs.values())
        raise
    return outputs


def close_all(devices: Iterable[Any]) -> None:
    for device in devices:
        device.close()


class GpioIndicator:
    """LEDs, buzzer and relay on gpiozero, driven by one pattern-player thread."""

    def __init__(
        self,
        pins: IndicatorPins,
        *,
        pin_factory: Any,
        relay_seconds: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
        run_thread: bool = True,
    ) -> None:
        if not relay_seconds > 0:
            raise ValueError(f"relay_seconds must be positive, not {relay_seconds!r}")
        relay_time = relay_seconds if pins.relay is not None else 0.0
        self.patterns = {status: verdict_pattern(status, relay_time) for status in VerdictStatus}
        self.state = IndicatorState.IDLE
        self._outputs = make_outputs(pins, pin_factory)
        # Each output's pin and the level that lights it, written directly on the hot path:
        # gpiozero's `value` setter adds a blink check and four calls per write, which matter
        # between a code's decode and its light (the devices still own and release the pins).
        self._levels = {
            output: (device.pin, pins.active_high) for output, device in self._outputs.items()
        }
        self._player = PatternPlayer(clock)
        self._lit: frozenset[Output] = frozenset()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        if run_thread:
            self._thread = threading.Thread(target=self._run, name="indicator", daemon=True)
            self._thread.start()

    def show(self, status: VerdictStatus) -> None:
        pattern = self.patterns[status]
        with self._lock:
            if self._closed:
                return
            self._player.play(pattern)
            first = pattern[0].on  # the first step lights now, in the caller: a pin write
            if first != self._lit:
                self._light(first)
        self._wake.set()  # the thread plays the rest

    def set_state(self, state: IndicatorState) -> None:
        with self._lock:
            if self._closed or state == self.state:
                return  # the same state again must not restart its blinking
            self.state = state
            self._player.loop(STATE_PATTERNS[state])
            self._update_locked()
        self._wake.set()

    def update(self) -> float | None:
        """Light what is due now; return seconds until the next change (None: none planned).

        The background thread calls this; with run_thread=False the caller does.
        """
        with self._lock:
            return None if self._closed else self._update_locked()

    def close(self) -> None:
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
        if on != self._lit:
            self._light(on)
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
