"""The demo's terminal indicator: what the pins do, in words, the moment the gate lights."""

from __future__ import annotations

import io

from device.indicator.base import IndicatorState, Output
from device.indicator.patterns import DENIED_PATTERN, step
from device.indicator.terminal import TerminalIndicator, describe_pattern
from protocol.verdicts import Reason, VerdictStatus


def test_terminal_shows_each_verdict_with_its_light_and_sound() -> None:
    out = io.StringIO()
    terminal = TerminalIndicator(out, relay_seconds=3.0)
    terminal.show(VerdictStatus.RECORDED, Reason.OK)
    terminal.show(VerdictStatus.RECORDED, Reason.INVALID)
    terminal.show(VerdictStatus.GRANTED, Reason.OK)
    terminal.show(VerdictStatus.DENIED, Reason.NOT_ALLOWED)
    assert out.getvalue().splitlines() == [
        "\x1b[32m●\x1b[0m RECORDED  green 0.5 s, 1 beep",
        "\x1b[33m●\x1b[0m SHOW AGAIN amber 1.0 s, 2 beeps",
        "\x1b[32m●\x1b[0m GRANTED   green 1.5 s, door released 3.0 s, 1 beep",
        "\x1b[31m●\x1b[0m DENIED    red 1.5 s, 3 beeps",
    ]


def test_terminal_without_colour_writes_plain_text_and_each_state_once() -> None:
    out = io.StringIO()
    terminal = TerminalIndicator(out, color=False)
    terminal.set_state(IndicatorState.OFFLINE)
    terminal.set_state(IndicatorState.OFFLINE)
    terminal.show(VerdictStatus.DENIED, Reason.BLOCKED)
    terminal.set_state(IndicatorState.FAULT)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("○ offline")
    assert lines[1:] == ["● DENIED    red 1.5 s, 3 beeps", "● fault: see the gate's log"]
    assert "\x1b" not in out.getvalue()


def test_terminal_dims_the_offline_line() -> None:
    out = io.StringIO()
    TerminalIndicator(out).set_state(IndicatorState.OFFLINE)
    assert out.getvalue().startswith("\x1b[2m○ offline") and out.getvalue().endswith("\x1b[0m\n")


def test_beeps_are_counted_as_separate_runs_of_the_buzzer() -> None:
    assert describe_pattern(DENIED_PATTERN).endswith("3 beeps")
    held = (step(0.1, Output.BUZZER), step(0.1, Output.BUZZER, Output.GREEN))
    assert describe_pattern(held) == "green 0.1 s, 1 beep"
    assert describe_pattern(()) == "dark"
