"""The setup loop (device/setup.py) on rendered frames and MockFactory pins: what it does with a
code that is not an enrolment card, a damaged card, a good card, and a failing camera."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from device.camera.memory import MemorySource
from device.camera.source import CameraError, Frame
from device.decode.backends import make_decoder
from device.enrolment.identity import StoredIdentity
from device.indicator.base import IndicatorState
from device.indicator.gpio import GpioIndicator, IndicatorPins
from device.setup import Enrolled, SetupMode
from device.system.health import Health
from gatescan.testing.samples import cccd_payload, render_code
from protocol.enrolment import EnrolmentCode, EnrolmentGrant
from protocol.verdicts import Direction
from tests.support.waiting import wait_until

GOOD = "GATESCAN-ENROL/1?server=https%3A%2F%2Fenrol.lan&token=" + "k" * 40 + "&ca=" + "ab" * 32
GRANT = EnrolmentGrant(
    device_id="gate-1",
    site_id="s",
    direction=Direction.IN,
    broker_url="mqtts://broker.lan:8883",
    username="gate-1",
    password="p" * 20,
    ca_pem="pem",
)


PINS = MockFactory()  # one per test (reset below): gpiozero's own recorded pins
RED = 27


@pytest.fixture(autouse=True)
def fresh_pins() -> Iterator[None]:
    yield
    PINS.reset()


class BrokenCamera:
    def read(self) -> Frame:
        raise CameraError("no camera on this test bench")

    def close(self) -> None:
        pass


@contextmanager
def setup_on(
    source: object, exchange: Callable[[EnrolmentCode], EnrolmentGrant], tmp_path: Path
) -> Iterator[tuple[SetupMode, GpioIndicator, list[Enrolled | None]]]:
    indicator = GpioIndicator(IndicatorPins(), pin_factory=PINS)
    mode = SetupMode(
        source=source,  # type: ignore[arg-type]
        decoder=make_decoder("auto"),
        indicator=indicator,
        health=Health(),
        exchange=exchange,
        keep=lambda grant: StoredIdentity(grant, tmp_path / "ca.crt"),
    )
    stop = threading.Event()
    result: list[Enrolled | None] = []
    thread = threading.Thread(target=lambda: result.append(mode.run(stop)))
    thread.start()
    try:
        yield mode, indicator, result
    finally:
        stop.set()
        thread.join(timeout=15)
        mode.close()
    assert not thread.is_alive()


def frames_of(text: bytes) -> MemorySource:
    return MemorySource([render_code(text, frame_size=(640, 480), module_px=4)], fps=10)


def never(code: EnrolmentCode) -> EnrolmentGrant:
    raise AssertionError("no exchange expected")


def test_a_good_card_is_exchanged_and_the_loop_ends_enrolled(tmp_path: Path) -> None:
    asked: list[EnrolmentCode] = []

    def exchange(code: EnrolmentCode) -> EnrolmentGrant:
        asked.append(code)
        return GRANT

    with setup_on(frames_of(GOOD.encode()), exchange, tmp_path) as (_, _indicator, result):
        wait_until(lambda: result, 15, "the loop's end")
    [enrolled] = result
    assert enrolled is not None and enrolled.identity.grant == GRANT
    assert enrolled.code_read_at <= enrolled.stored_at
    assert [code.server for code in asked] == ["https://enrol.lan"]


def test_a_person_s_card_in_setup_mode_is_denied_and_not_exchanged(tmp_path: Path) -> None:
    card = cccd_payload("079193012345", "Lý Ơn", "05061993", "Nam", "Huế", "21042021")
    with setup_on(frames_of(card), never, tmp_path) as (_, indicator, result):
        wait_until(lambda: indicator.state is IndicatorState.SETUP, 5, "the setup light")
        lit_red = lambda: any(change.state for change in PINS.pin(RED).states)  # noqa: E731
        wait_until(lit_red, 10, "the denied flash (red)")
    assert result == [None]


@pytest.mark.parametrize(
    "text",
    [
        "GATESCAN-ENROL/2?server=https%3A%2F%2Fenrol.lan&token=" + "k" * 40 + "&ca=" + "ab" * 32,
        "GATESCAN-ENROL/1?server=https%3A%2F%2Fenrol.lan&token=short&ca=" + "ab" * 32,
        "gatescan-enrol/1?server=ftp%3A%2F%2Fenrol.lan&token=" + "k" * 40 + "&ca=" + "ab" * 32,
    ],
    ids=["version 2", "short token", "not https"],
)
def test_a_damaged_card_is_refused_for_good_without_an_exchange(tmp_path: Path, text: str) -> None:
    with setup_on(frames_of(text.encode()), never, tmp_path) as (_, indicator, result):
        wait_until(
            lambda: indicator.state is IndicatorState.ENROLMENT_REFUSED, 15, "the refused light"
        )
    assert result == [None]


def test_a_failing_camera_shows_the_fault_light_over_setup(tmp_path: Path) -> None:
    with setup_on(BrokenCamera(), never, tmp_path) as (_, indicator, _result):
        wait_until(lambda: indicator.state is IndicatorState.FAULT, 10, "the fault light")
