"""What every indicator is: the `Indicator` protocol, the background states shown between scans, the
outputs a pattern switches, and `TeeIndicator` (several indicators as one).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Protocol

from device.system.health import Health
from protocol.verdicts import VerdictStatus


class IndicatorState(StrEnum):
    """The background state shown between scans."""

    IDLE = "idle"
    OFFLINE = "offline"
    FAULT = "fault"


def background_state(health: Health) -> IndicatorState:
    """What the light shows between scans: a fault over everything, else whether the gate is
    connected."""
    if health.faults:
        return IndicatorState.FAULT
    return IndicatorState.IDLE if health.online else IndicatorState.OFFLINE


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
