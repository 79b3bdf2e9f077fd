"""The light and sound patterns: one per verdict status, one background pattern per gate state.

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
is lit at any moment from an injected clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from device.indicator.base import IndicatorState, Output
from protocol.verdicts import VerdictStatus

EPSILON = 1e-6  # seconds: a clock this close to a step's end has reached it (float sums drift)


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
