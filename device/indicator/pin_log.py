"""Fault injection: the indicator's mock pins write every change to a file, so a test can see the
light from outside the agent process.

Off a Raspberry Pi the indicator drives gpiozero's MockFactory pins (device/app.py:
default_pin_factory). When the environment variable GATESCAN_FAULT_PIN_LOG names a file, those
mock pins are `RecordingPin`s: each change of a pin's state appends one line to that file,

    <monotonic s> <wall clock, epoch s> <pin name> <state 0|1>
    8123.406112 1764144000.123456 GPIO22 1

with one `os.write` on a descriptor opened with O_APPEND: nothing is buffered in the process, so a
line written before a SIGKILL is in the file after it (the kernel holds it), and the lines of one
process keep the order of its pin writes. A fault test counts the showings the gate lit from this
file (each verdict starts with a beep, see patterns.py), not from the gate's journal or log: the
gate does not get to judge itself.

Inert unless set, and never on a Pi (its real pins are not wrapped); the agent logs a warning when
it is set. `read_pin_log` reads the file back.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin

log = logging.getLogger(__name__)

PIN_LOG_ENV = "GATESCAN_FAULT_PIN_LOG"


class PinLog:
    """An append-only file of pin changes, one unbuffered write per change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = os.open(
            path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
        )

    def write(self, pin: str, state: bool) -> None:
        if self._fd is None:
            return
        line = f"{time.monotonic():.6f} {time.time():.6f} {pin} {int(state)}\n"
        os.write(self._fd, line.encode("ascii"))  # one short write: whole, or not at all

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


class RecordingPin(MockPin):
    """A MockPin that writes each change of its state to its factory's `pin_log`."""

    def _change_state(self, value: bool) -> bool:
        changed: bool = super()._change_state(value)
        if changed:
            self.factory.pin_log.write(self.info.name, value)
        return changed


class RecordingMockFactory(MockFactory):
    """gpiozero's MockFactory whose pins are RecordingPins writing to `pin_log`."""

    def __init__(self, pin_log: PinLog) -> None:
        super().__init__(pin_class=RecordingPin)
        self.pin_log = pin_log

    def close(self) -> None:
        super().close()
        self.pin_log.close()


def mock_pin_factory(env: Mapping[str, str]) -> Any:
    """gpiozero's MockFactory, or a RecordingMockFactory when GATESCAN_FAULT_PIN_LOG is set."""
    path = env.get(PIN_LOG_ENV, "").strip()
    if not path:
        return MockFactory()
    log.warning(
        "fault injection: %s=%r: every mock pin change is written there (a test setting; never "
        "on a gate)",
        PIN_LOG_ENV,
        path,
    )
    return RecordingMockFactory(PinLog(Path(path)))


@dataclass(frozen=True)
class PinChange:
    """One line of a pin log."""

    monotonic: float
    wall: float
    pin: str  # gpiozero's name: "GPIO22"
    state: bool


def read_pin_log(path: Path) -> list[PinChange]:
    """Every change in the file, in the order written (empty when no pin changed, or no file)."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return []
    changes = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if len(fields) != 4 or fields[3] not in ("0", "1"):
            raise ValueError(f"{path}:{number}: not a pin change: {line!r}")
        changes.append(PinChange(float(fields[0]), float(fields[1]), fields[2], fields[3] == "1"))
    return changes
