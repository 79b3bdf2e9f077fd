"""What the person at the gate sees and hears: LEDs, a buzzer and an optional door relay.

One pattern per verdict status, and one background pattern per gate state between scans:

| pattern  | what happens                                                        |
|----------|---------------------------------------------------------------------|
| recorded | green 0.5 s, one short beep                                         |
| granted  | green 1.5 s, one short beep, relay energised for `relay_seconds`    |
| denied   | red 1.5 s, three short beeps; the relay never                       |
| idle     | everything off                                                      |
| offline  | a short red blink every 2 s: staff can see the gate is not connected |
| fault    | red and green alternating every 0.5 s                               |

A verdict plays over the background state, which starts again when the verdict ends. A new verdict
replaces the one playing at once: people walk fast, and the light must answer the code just shown.

Patterns are plain data: a tuple of `Step(seconds, outputs that are on)`. `PatternPlayer` says what
is lit at any moment from an injected clock; `GpioIndicator` drives gpiozero devices from it on one
background thread that waits on a `threading.Event`, so `show()` returns at once and `close()`
stops at once. Tests pass `run_thread=False` and a fake clock and call `update()` themselves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from gpiozero import LED, Buzzer, OutputDevice

from protocol.verdicts import VerdictStatus

log = logging.getLogger(__name__)

EPSILON = 1e-6  # seconds: a clock this close to a step's end has reached it (float sums drift)
BCM_PINS = range(28)  # GPIO0-27 on the 40-pin header


class IndicatorState(StrEnum):
    """The background state shown between scans."""

    IDLE = "idle"
    OFFLINE = "offline"
    FAULT = "fault"


class Indicator(Protocol):
    def show(self, status: VerdictStatus) -> None:
        """Start the verdict's pattern and return at once (the frame loop calls this first)."""
        ...

    def set_state(self, state: IndicatorState) -> None:
        """Change the background pattern shown between scans."""
        ...

    def close(self) -> None:
        """Everything off, release the hardware. Safe to call twice."""
        ...


class Output(StrEnum):
    GREEN = "green"
    RED = "red"
    BUZZER = "buzzer"
    RELAY = "relay"


class Step(NamedTuple):
    seconds: float
    on: frozenset[Output]  # every other output is off


Pattern = tuple[Step, ...]
# The order outputs are switched in when several change at once: what the person looks at first.
SWITCH_ORDER = (Output.GREEN, Output.RED, Output.RELAY, Output.BUZZER)


def step(seconds: float, *on: Output) -> Step:
    return Step(seconds, frozenset(on))


BEEP = 0.1
G, R, B = Output.GREEN, Output.RED, Output.BUZZER
RECORDED_PATTERN: Pattern = (step(BEEP, G, B), step(0.4, G))
GRANTED_LIGHT: Pattern = (step(BEEP, G, B), step(1.4, G))
DENIED_PATTERN: Pattern = (
    *(step(BEEP, R, B), step(BEEP, R)) * 2,
    step(BEEP, R, B),
    step(1.0, R),
)
STATE_PATTERNS: dict[IndicatorState, Pattern] = {
    IndicatorState.IDLE: (),
    # The dark part comes first, so a heartbeat never follows a green verdict straight away.
    IndicatorState.OFFLINE: (step(1.9), step(0.1, R)),
    IndicatorState.FAULT: (step(0.5, R), step(0.5, G)),
}


def with_output_for(pattern: Pattern, output: Output, seconds: float) -> Pattern:
    """`pattern` with `output` also on for its first `seconds` (longer than it, if need be)."""
    steps: list[Step] = []
    start = 0.0
    for current in pattern:
        end = start + current.seconds
        if end <= seconds + EPSILON:
            steps.append(Step(current.seconds, current.on | {output}))
        elif start < seconds:
            steps += [Step(seconds - start, current.on | {output}), Step(end - seconds, current.on)]
        else:
            steps.append(current)
        start = end
    if seconds > start + EPSILON:
        steps.append(step(seconds - start, output))
    return tuple(steps)


def verdict_pattern(status: VerdictStatus, relay_seconds: float = 0.0) -> Pattern:
    """The pattern for a verdict; `relay_seconds` 0 means there is no relay to open."""
    if status is VerdictStatus.GRANTED:
        if relay_seconds > 0:
            return with_output_for(GRANTED_LIGHT, Output.RELAY, relay_seconds)
        return GRANTED_LIGHT
    if status is VerdictStatus.RECORDED:
        return RECORDED_PATTERN
    return DENIED_PATTERN


def duration(pattern: Pattern) -> float:
    return sum(current.seconds for current in pattern)


def step_at(pattern: Pattern, elapsed: float) -> tuple[frozenset[Output], float] | None:
    """What is on `elapsed` seconds into `pattern` and for how much longer; None past its end."""
    end = 0.0
    for current in pattern:
        end += current.seconds
        if elapsed < end - EPSILON:
            return current.on, end - elapsed
    return None


class PatternPlayer:
    """Which outputs are on now: a verdict pattern played once over a looping background."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._verdict: tuple[Pattern, float] | None = None
        self._background: tuple[Pattern, float] = ((), clock())

    def play(self, pattern: Pattern) -> None:
        """Play `pattern` once from now, replacing any verdict still playing."""
        self._verdict = (pattern, self._clock())

    def loop(self, pattern: Pattern) -> None:
        """Repeat `pattern` whenever no verdict plays; an empty pattern means all off."""
        self._background = (pattern, self._clock())

    def current(self) -> tuple[frozenset[Output], float | None]:
        """The outputs on now, and the seconds until that changes (None: it never does)."""
        now = self._clock()
        if self._verdict is not None:
            pattern, started = self._verdict
            found = step_at(pattern, now - started)
            if found is not None:
                return found
            self._verdict = None
            self._background = (self._background[0], started + duration(pattern))
        pattern, started = self._background
        period = duration(pattern)
        if period <= 0:
            return frozenset(), None
        found = step_at(pattern, (now - started) % period)
        return found if found is not None else (pattern[0].on, pattern[0].seconds)


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


class TeeIndicator:
    """Forwards to several indicators in order (GPIO first, then the screen)."""

    def __init__(self, *indicators: Indicator) -> None:
        self.indicators = indicators

    def show(self, status: VerdictStatus) -> None:
        self._each(lambda indicator: indicator.show(status))

    def set_state(self, state: IndicatorState) -> None:
        self._each(lambda indicator: indicator.set_state(state))

    def close(self) -> None:
        self._each(lambda indicator: indicator.close())

    def _each(self, call: Callable[[Indicator], None]) -> None:
        # One failing indicator (a closed terminal) must not keep the others dark.
        first_error: Exception | None = None
        for indicator in self.indicators:
            try:
                call(indicator)
            except Exception as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
