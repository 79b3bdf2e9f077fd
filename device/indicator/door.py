"""The door: what its relay does at rest and on release (fail-secure or fail-safe), and the inputs
that release it without a verdict (a fire alarm, a guard's button).

The patterns (patterns.py) speak of the door *released* (`Output.RELAY`): only the `granted`
family has it. What that does to the relay coil depends on the lock, `indicator.door.fail`:

| fail     | the lock with no power | at rest (locked)      | released              |
|----------|------------------------|-----------------------|-----------------------|
| `secure` | stays locked           | relay de-energised    | relay energised       |
| `safe`   | releases               | relay energised       | relay de-energised    |

A fail-safe door is therefore released whenever the gate does not drive its relay: the agent
stopped, restarting or updating, the Pi without power. That is what fail-safe means.

Inputs are gpiozero `Button`s: the pin pulled up inside the Pi, a contact closing it to ground is
"active" (active low). `fire_alarm_pin`: the door is held released for as long as the contact is
closed, over any verdict, with the `fire_alarm` light; `release_button_pin`: each press releases
the door for `relay_seconds`, as does a manager's release from the dashboard (a command over
MQTT: device/uplink/commands.py, `GpioIndicator.release`). Each release is logged, counted
(`Health.count_release`, sent in the telemetry) and the fire alarm is the `fire_alarm` flag in
the retained status while it lasts.
The gate's fire-alarm input is a second path, never the life-safety one: the fire panel must also
cut the lock's power itself (docs/operations.md: "The door").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

from gpiozero import Button

from device.indicator.base import Release

log = logging.getLogger(__name__)

DoorFail = Literal["secure", "safe"]
BUTTON_BOUNCE_S = 0.05  # a push button's contacts chatter for a few milliseconds


def release_level(fail: DoorFail, active_high: bool) -> bool:
    """The relay pin's level while the door is released: energised (fail-secure) or not."""
    return active_high if fail == "secure" else not active_high


class DoorInputs:
    """The fire-alarm and manual-release inputs; `on_change(release, active)` is called from
    gpiozero's thread on each change (a button press is active only: it ends by its time)."""

    def __init__(
        self,
        *,
        fire_alarm: int | None,
        release_button: int | None,
        pin_factory: Any,
        on_change: Callable[[Release, bool], None],
    ) -> None:
        self._fire_alarm: Button | None = None
        self._button: Button | None = None
        try:
            if fire_alarm is not None:
                self._fire_alarm = Button(fire_alarm, pull_up=True, pin_factory=pin_factory)
                self._fire_alarm.when_pressed = lambda: on_change(Release.FIRE_ALARM, True)
                self._fire_alarm.when_released = lambda: on_change(Release.FIRE_ALARM, False)
            if release_button is not None:
                self._button = Button(
                    release_button,
                    pull_up=True,
                    bounce_time=BUTTON_BOUNCE_S,
                    pin_factory=pin_factory,
                )
                self._button.when_pressed = lambda: on_change(Release.BUTTON, True)
        except Exception:
            self.close()
            raise

    def fire_alarm_active(self) -> bool:
        return self._fire_alarm is not None and bool(self._fire_alarm.is_pressed)

    def close(self) -> None:
        for button in (self._fire_alarm, self._button):
            if button is not None:
                button.close()


def log_release(release: Release, active: bool, relay_seconds: float) -> None:
    """One line per release of the door that no verdict granted, and per end of a fire alarm."""
    if release is Release.FIRE_ALARM:
        if active:
            log.warning("door: released by the fire alarm, for as long as it is active")
        else:
            log.warning("door: the fire alarm is over; the door locks again")
    elif release is Release.DASHBOARD:
        log.warning("door: released from the dashboard for %g s", relay_seconds)
    else:
        log.warning("door: released by the manual-release button for %g s", relay_seconds)
