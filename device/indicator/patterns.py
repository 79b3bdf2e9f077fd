"""The light and sound patterns: one per verdict family (base.py: `verdict_family`), one background
pattern per gate state. Amber is both LEDs on together (a two-LED gate has no third colour).

| family   | what happens                                                         |
|----------|----------------------------------------------------------------------|
| granted  | green 1.5 s, one short beep, the door released for `relay_seconds`   |
| recorded | green 0.5 s, one short beep                                          |
| rescan   | amber 1 s, two short beeps 0.4 s apart: "please show it again"       |
| denied   | red 1.5 s, three short beeps 0.2 s apart                             |

`granted`: access mode lets the person pass. `recorded`: log mode, a good code (reason `ok`).
`rescan`: log mode, a code recorded with any other reason (`invalid`, `bad_signature`, `expired`,
`not_yet_valid`: damaged, tampered or out of its window); nobody is stopped, but the person learns
the code did not read as good. `denied`: access mode refuses (any reason), or an enrolment card.

Only `granted` ever releases the door (the relay, see door.py for what "released" does to the
relay in a fail-safe or fail-secure installation); no other family touches it.

| background state    | what happens                                               |
|---------------------|------------------------------------------------------------|
| idle (running)      | everything off                                             |
| clock_unsynced      | a short green blink every 2 s                              |
| offline             | a short red blink every 2 s (the broker does not answer)   |
| no_network          | two short red blinks every 2 s                             |
| credentials_refused | three short red blinks every 2 s                           |
| fault               | red and green alternating every 0.5 s                      |
| config_error        | red on, with a short dark gap every 2 s                    |
| setup               | green 1 s on, 1 s off                                      |
| enrolling           | green flickering (0.1 s on, 0.1 s off)                     |
| enrolment_retry     | green 1 s, then a short red blink                          |
| enrolment_refused   | red 1 s on, 1 s off                                        |
| fire_alarm          | amber flashing (0.25 s on, 0.25 s off), the door held released |

Each background pattern is told apart by its colour and its rhythm, never by brightness; the
verdict patterns (a light held 0.5-1.5 s with beeps) never loop, and play over whatever background
runs. The buzzer sounds only for a verdict: one beep is a good code, two slow beeps ask for the
code again, three fast beeps refuse it.

A verdict plays over the background state, which starts again when the verdict ends. A new verdict
replaces the one playing at once: people walk fast, and the light must answer the code just shown.

Two patterns a person asks for remotely (issue 17), played once like a verdict (a scan's verdict
replaces them at once: the person at the gate comes first):

| pattern       | what happens                                                          |
|---------------|-----------------------------------------------------------------------|
| identify      | green, red, dark, 0.15 s each with 0.2 s dark, for 10 s: "this gate"  |
| self-test     | each output in turn, 1 s each (the buzzer 0.3 s), 0.3 s apart: green, |
|               | red, buzzer, and the door relay only when asked for (`include_relay`) |

Patterns are plain data: a tuple of `Step(seconds, outputs that are on)`. `PatternPlayer` says what
is lit at any moment from an injected clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from device.indicator.base import IndicatorState, Output, VerdictFamily

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


# Amber (both LEDs) for one second, two beeps with a long gap: not the one beep of a good code,
# not the quick three of a refusal.
RESCAN_PATTERN: Pattern = (
    step(BEEP, G, R, B),
    step(0.3, G, R),
    step(BEEP, G, R, B),
    step(0.5, G, R),
)


DENIED_PATTERN: Pattern = (
    *(step(BEEP, R, B), step(BEEP, R)) * 2,
    step(BEEP, R, B),
    step(1.0, R),
)


def red_blinks(count: int) -> Pattern:
    """`count` short red blinks in a 2 s period, the dark part first."""
    blinks = (step(0.15), step(0.1, R)) * count
    return (step(2.0 - 0.25 * count), *blinks)


STATE_PATTERNS: dict[IndicatorState, Pattern] = {
    IndicatorState.IDLE: (),
    # The dark part comes first, so a heartbeat never follows a green verdict straight away.
    IndicatorState.CLOCK_UNSYNCED: (step(1.9), step(0.1, G)),
    IndicatorState.OFFLINE: (step(1.9), step(0.1, R)),
    IndicatorState.NO_NETWORK: red_blinks(2),
    IndicatorState.CREDENTIALS_REFUSED: red_blinks(3),
    IndicatorState.FAULT: (step(0.5, R), step(0.5, G)),
    IndicatorState.CONFIG_ERROR: (step(1.8, R), step(0.2)),
    IndicatorState.SETUP: (step(1.0, G), step(1.0)),
    IndicatorState.ENROLLING: (step(0.1, G), step(0.1)),
    IndicatorState.ENROLMENT_RETRY: (step(1.0, G), step(0.4), step(0.2, R), step(0.4)),
    IndicatorState.ENROLMENT_REFUSED: (step(1.0, R), step(1.0)),
    IndicatorState.FIRE_ALARM: (step(0.25, G, R), step(0.25)),
}


# Green, then red, then dark, twice a second for 10 s: faster than the `fault` background's
# alternation, and with a dark beat, so it is told apart from every state.
IDENTIFY_SECONDS = 10.0
IDENTIFY_PATTERN: Pattern = (step(0.15, G), step(0.15, R), step(0.2)) * int(IDENTIFY_SECONDS / 0.5)

SELFTEST_ORDER = (Output.GREEN, Output.RED, Output.BUZZER, Output.RELAY)
SELFTEST_ON_S = 1.0
SELFTEST_BEEP_S = 0.3
SELFTEST_GAP_S = 0.3


def selftest_pattern(outputs: frozenset[Output], include_relay: bool = False) -> Pattern:
    """Each of `outputs` in turn (green, red, buzzer, then the relay only if `include_relay`),
    with a dark gap before each: a person at the gate sees and hears each one alone."""
    order = [o for o in SELFTEST_ORDER if o is not Output.RELAY or include_relay]
    steps: list[Step] = []
    for output in order:
        if output in outputs:
            seconds = SELFTEST_BEEP_S if output is Output.BUZZER else SELFTEST_ON_S
            steps += [step(SELFTEST_GAP_S), step(seconds, output)]
    return (*steps, step(SELFTEST_GAP_S)) if steps else ()


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


_FAMILY_PATTERNS = {
    VerdictFamily.RECORDED: RECORDED_PATTERN,
    VerdictFamily.RESCAN: RESCAN_PATTERN,
    VerdictFamily.DENIED: DENIED_PATTERN,
}


def verdict_pattern(family: VerdictFamily, relay_seconds: float = 0.0) -> Pattern:
    """The pattern for a verdict family; `relay_seconds` 0 means there is no relay to open. Only
    `granted` has the relay in it."""
    if family is VerdictFamily.GRANTED:
        if relay_seconds > 0:
            return with_output_for(GRANTED_LIGHT, Output.RELAY, relay_seconds)
        return GRANTED_LIGHT
    return _FAMILY_PATTERNS[family]


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
