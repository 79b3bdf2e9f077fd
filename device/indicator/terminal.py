"""The indicator drawn in a terminal: the demo's stand-in for LEDs, buzzer and relay.

Each verdict is printed the moment the gate lights, with what the pins do (from the same pattern
data that drives GPIO), so the screen shows the order of the data path: light first.
"""

from __future__ import annotations

import threading
from typing import TextIO

from device.indicator.base import IndicatorState, Output, VerdictFamily, verdict_family
from device.indicator.patterns import Pattern, verdict_pattern
from protocol.verdicts import Reason, VerdictStatus

ANSI = {"green": "\x1b[32m", "red": "\x1b[31m", "yellow": "\x1b[33m", "dim": "\x1b[2m"}
RESET = "\x1b[0m"
VERDICT_LOOKS = {
    VerdictFamily.GRANTED: ("green", "● GRANTED"),
    VerdictFamily.RECORDED: ("green", "● RECORDED"),
    VerdictFamily.RESCAN: ("yellow", "● SHOW AGAIN"),
    VerdictFamily.DENIED: ("red", "● DENIED"),
}
STATE_LOOKS = {
    IndicatorState.IDLE: ("dim", "○ idle: ready to scan"),
    IndicatorState.OFFLINE: ("dim", "○ offline: entries wait on the gate until the link is back"),
    IndicatorState.FAULT: ("yellow", "● fault: see the gate's log"),
    IndicatorState.NO_NETWORK: ("yellow", "● no network: check the gate's cable or Wi-Fi"),
    IndicatorState.CREDENTIALS_REFUSED: ("red", "● the broker refused this gate: re-enrol it"),
    IndicatorState.CLOCK_UNSYNCED: ("dim", "○ clock not synchronised: entry times not trusted"),
    IndicatorState.CONFIG_ERROR: ("red", "● config error: see the gate's log"),
    IndicatorState.SETUP: ("dim", "○ setup mode: show the enrolment card"),
    IndicatorState.ENROLLING: ("dim", "○ enrolling..."),
    IndicatorState.ENROLMENT_RETRY: ("yellow", "● enrolment server not answering: retrying"),
    IndicatorState.ENROLMENT_REFUSED: ("red", "● enrolment card refused: show another"),
    IndicatorState.FIRE_ALARM: ("yellow", "● fire alarm: the door is held released"),
}


def paint(color: str, text: str) -> str:
    """ANSI colours: a dim line greys as a whole, any other colours only its leading block."""
    block, _, rest = text.partition(" ")
    if color == "dim":
        return f"{ANSI[color]}{text}{RESET}"
    return f"{ANSI[color]}{block}{RESET} {rest}"


def verdict_look(status: VerdictStatus, reason: Reason, *, color: bool = True) -> str:
    """The verdict as the terminal shows it, e.g. a green '● RECORDED'."""
    hue, text = VERDICT_LOOKS[verdict_family(status, reason)]
    return paint(hue, text) if color else text


def describe_pattern(pattern: Pattern) -> str:
    """What a person sees and hears, e.g. 'green 0.5 s, 1 beep' (green and red together: amber)."""
    parts = []
    amber = sum(s.seconds for s in pattern if {Output.GREEN, Output.RED} <= s.on)
    if amber:
        parts.append(f"amber {amber:.1f} s")
    for output in (Output.GREEN, Output.RED, Output.RELAY):
        seconds = sum(
            s.seconds
            for s in pattern
            if output in s.on
            and not (output is not Output.RELAY and {Output.GREEN, Output.RED} <= s.on)
        )
        if seconds:
            name = "door released" if output is Output.RELAY else output.value
            parts.append(f"{name} {seconds:.1f} s")
    beeps = sum(
        1
        for index, step in enumerate(pattern)
        if Output.BUZZER in step.on and (index == 0 or Output.BUZZER not in pattern[index - 1].on)
    )
    if beeps:
        parts.append(f"{beeps} beep" + ("s" if beeps > 1 else ""))
    return ", ".join(parts) or "dark"


class TerminalIndicator:
    """One short line per verdict (with its light and sound) or background state change."""

    def __init__(self, out: TextIO, *, color: bool = True, relay_seconds: float = 0.0) -> None:
        self._out = out
        self._color = color
        self._relay_seconds = relay_seconds
        self._state: IndicatorState | None = None
        self._lock = threading.Lock()

    def show(self, status: VerdictStatus, reason: Reason) -> None:
        family = verdict_family(status, reason)
        pattern = verdict_pattern(family, self._relay_seconds)
        hue, text = VERDICT_LOOKS[family]
        self._write(hue, f"{text:11} {describe_pattern(pattern)}")

    def set_state(self, state: IndicatorState) -> None:
        with self._lock:
            if state == self._state:
                return
            self._state = state
        self._write(*STATE_LOOKS[state])

    def close(self) -> None:
        """The stream belongs to the caller: nothing to release."""

    def _write(self, color: str, text: str) -> None:
        if self._color:
            text = paint(color, text)
        with self._lock:
            self._out.write(text + "\n")
            self._out.flush()
