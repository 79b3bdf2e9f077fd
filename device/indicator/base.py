"""What every indicator is: the `Indicator` protocol, the verdict families (`verdict_family`: what
a verdict looks like), the background states shown between scans, the outputs a pattern switches,
the door's releases, and `TeeIndicator` (several indicators as one).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Protocol

from device.system.health import Fault, Health, LinkState
from protocol.verdicts import Reason, VerdictStatus


class VerdictFamily(StrEnum):
    """What a verdict looks like and sounds like (patterns.py): four families for three statuses."""

    GRANTED = "granted"  # green, one beep, the door released: the only family that opens it
    RECORDED = "recorded"  # log mode, a good code: green, one short beep
    RESCAN = "rescan"  # log mode, a code that failed its checks: amber, two slow beeps
    DENIED = "denied"  # access mode's refusal: red, three fast beeps


def verdict_family(status: VerdictStatus, reason: Reason) -> VerdictFamily:
    """The family a verdict shows as. A code recorded in log mode whose reason is not `ok` (a
    damaged, tampered, expired or not yet valid code) asks the person to show it again: nobody is
    stopped, but someone holding a bad card learns it at the gate."""
    if status is VerdictStatus.GRANTED:
        return VerdictFamily.GRANTED
    if status is VerdictStatus.RECORDED:
        return VerdictFamily.RECORDED if reason is Reason.OK else VerdictFamily.RESCAN
    return VerdictFamily.DENIED


class Release(StrEnum):
    """Why the door was released other than by a granted verdict (each is logged and counted)."""

    FIRE_ALARM = "fire_alarm"  # the fire-alarm input: released for as long as it is active
    BUTTON = "button"  # the guard's manual-release button: released for relay_seconds
    DASHBOARD = "dashboard"  # a manager's command from the dashboard: released for relay_seconds


class IndicatorState(StrEnum):
    """The background state shown between scans (docs/operations.md: what each looks like and
    what the technician does about it)."""

    IDLE = "idle"  # running: connected, clock synchronised, nothing wrong
    OFFLINE = "offline"  # the broker does not answer (the network does)
    NO_NETWORK = "no_network"  # no route or no name: the gate's own network
    CREDENTIALS_REFUSED = "credentials_refused"  # the broker refused the gate, or it the broker
    CLOCK_UNSYNCED = "clock_unsynced"  # running, but the time entries carry is not trusted
    FAULT = "fault"  # camera or storage
    CONFIG_ERROR = "config_error"  # the config cannot be used: nothing runs but this light
    SETUP = "setup"  # no identity: waiting for an enrolment card
    ENROLLING = "enrolling"  # a card was read; talking to the enrolment server
    ENROLMENT_RETRY = "enrolment_retry"  # the server was busy or unreachable: trying again
    ENROLMENT_REFUSED = "enrolment_refused"  # the card was refused for good: show another
    FIRE_ALARM = "fire_alarm"  # the fire alarm is active: the door is held released


# Link states and the light each shows while the gate is not connected.
_LINK_STATES = {
    LinkState.NO_NETWORK: IndicatorState.NO_NETWORK,
    LinkState.REFUSED: IndicatorState.CREDENTIALS_REFUSED,
    LinkState.UNREACHABLE: IndicatorState.OFFLINE,
    LinkState.CONNECTING: IndicatorState.OFFLINE,
}


def background_state(health: Health) -> IndicatorState:
    """What the light shows between scans: a fire alarm over everything, then a fault, then why
    the gate is not connected, then an unsynchronised clock; else running."""
    faults = health.faults
    if Fault.FIRE_ALARM in faults:
        return IndicatorState.FIRE_ALARM
    if faults:
        return IndicatorState.FAULT
    if not health.online:
        return _LINK_STATES[health.link]
    return IndicatorState.IDLE if health.clock_synced else IndicatorState.CLOCK_UNSYNCED


class Indicator(Protocol):
    def show(self, status: VerdictStatus, reason: Reason) -> None:
        """Start the pattern of the verdict's family (`verdict_family`) and return at once (the
        frame loop calls this first)."""
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

    def show(self, status: VerdictStatus, reason: Reason) -> None:
        self._each(lambda indicator: indicator.show(status, reason))

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
