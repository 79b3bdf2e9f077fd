"""The pin log: the indicator's mock pins, written to a file a test reads from outside the process
(device/indicator/pin_log.py), and its wiring by device/app.py's default_pin_factory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from device.app import default_pin_factory
from device.indicator.gpio import GpioIndicator, IndicatorPins
from device.indicator.pin_log import (
    PIN_LOG_ENV,
    PinChange,
    PinLog,
    RecordingMockFactory,
    mock_pin_factory,
    read_pin_log,
)
from protocol.verdicts import Reason, VerdictStatus
from tests.support.paths import PROJECT_ROOT


def states(changes: list[PinChange], pin: str) -> list[bool]:
    return [change.state for change in changes if change.pin == pin]


def test_every_change_of_an_indicator_pin_is_a_line_in_order(tmp_path: Path) -> None:
    path = tmp_path / "pins.log"
    factory = RecordingMockFactory(PinLog(path))
    gpio = GpioIndicator(IndicatorPins(), pin_factory=factory, run_thread=False)
    try:
        gpio.show(VerdictStatus.RECORDED, Reason.OK)  # green and buzzer on, in the caller
        changes = read_pin_log(path)
        assert [(c.pin, c.state) for c in changes] == [("GPIO17", True), ("GPIO22", True)]
        # Red on, then green off; the buzzer stays on.
        gpio.show(VerdictStatus.DENIED, Reason.NOT_ALLOWED)
    finally:
        gpio.close()  # everything off
        factory.close()
    changes = read_pin_log(path)
    assert states(changes, "GPIO17") == [True, False]
    assert states(changes, "GPIO27") == [True, False]
    assert states(changes, "GPIO22") == [True, False]
    assert [c.monotonic for c in changes] == sorted(c.monotonic for c in changes)
    assert factory.pin(17).state is False  # still gpiozero's MockPin in every other way


def test_lines_written_before_a_sigkill_are_in_the_file_after_it(tmp_path: Path) -> None:
    path = tmp_path / "pins.log"
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from device.indicator.pin_log import PinLog\n"
        "log = PinLog(Path(sys.argv[1]))\n"
        "log.write('GPIO22', True)\n"
        "log.write('GPIO22', False)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(path)], cwd=PROJECT_ROOT, check=False)
    assert done.returncode == -9
    assert [(c.pin, c.state) for c in read_pin_log(path)] == [("GPIO22", True), ("GPIO22", False)]


def test_a_second_writer_appends(tmp_path: Path) -> None:
    path = tmp_path / "pins.log"
    for state in (True, False):
        log = PinLog(path)
        log.write("GPIO17", state)
        log.close()
        log.write("GPIO17", True)  # closed: ignored
    assert states(read_pin_log(path), "GPIO17") == [True, False]


def test_no_file_reads_as_no_change_and_a_bad_line_is_an_error(tmp_path: Path) -> None:
    assert read_pin_log(tmp_path / "none.log") == []
    bad = tmp_path / "bad.log"
    bad.write_text("1.0 2.0 GPIO22 1\n1.0 2.0 GPIO22\n", encoding="ascii")
    with pytest.raises(ValueError, match=r"bad\.log:2"):
        read_pin_log(bad)


def test_without_the_variable_the_pins_are_gpiozeros_own(tmp_path: Path) -> None:
    factory = mock_pin_factory({})
    assert type(factory) is MockFactory
    assert type(mock_pin_factory({PIN_LOG_ENV: "  "})) is MockFactory


def test_off_a_pi_the_agent_records_its_pins_when_asked_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "pins.log"
    factory = default_pin_factory({PIN_LOG_ENV: str(path)})
    try:
        assert isinstance(factory, RecordingMockFactory)
        assert any(
            PIN_LOG_ENV in r.getMessage() and r.levelname == "WARNING" for r in caplog.records
        )
        factory.pin(22).function = "output"
        factory.pin(22).state = True
    finally:
        factory.close()
    assert states(read_pin_log(path), "GPIO22") == [True]
    assert type(default_pin_factory({})) is MockFactory
