"""The frame loop on real parts: real zbar, real journal files, gpiozero MockFactory pins.

The only fakes are at the hardware boundary: frames come from a list instead of a camera, and
an indicator that notes what the journal held at the moment it was told to light.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from device.camera import CameraError, Frame, FrameSource
from device.clock import FixedSyncClock
from device.debounce import Debounce
from device.decode import PyzbarDecoder
from device.events import EventBuilder
from device.health import Health
from device.indicator import (
    GpioIndicator,
    Indicator,
    IndicatorPins,
    IndicatorState,
    TeeIndicator,
)
from device.journal import Journal
from device.policy import Policy
from device.scanner import CAMERA_FAULT, STORAGE_FAULT, Scan, Scanner
from device.tinydb_storage import write_fully
from gatescan.samples import blank_frame, cccd_payload, render_code
from protocol import Direction, VerdictStatus

CARD = cccd_payload("079203012345", "Nguyễn Thị Thu Uyên", "05061993", "Nữ", "Hà Nội", "21042021")
SIZE = (640, 480)


class ListSource:
    """Frames from a list; then the camera 'fails' (CameraError) or the loop is stopped."""

    def __init__(self, frames: list[Frame], stop: threading.Event | None = None) -> None:
        self.frames = list(frames)
        self.stop = stop
        self.failures = 0

    def read(self) -> Frame:
        if not self.frames:
            if self.stop is not None:
                self.stop.set()
            self.failures += 1
            raise CameraError("no more frames")
        return self.frames.pop(0)

    def close(self) -> None:
        pass


class JournalWatchingIndicator:
    """Notes the journal's outbox depth each time it is told to light."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.depth_when_lit: list[int] = []
        self.states: list[IndicatorState] = []

    def show(self, status: VerdictStatus) -> None:
        self.depth_when_lit.append(self.journal.outbox_depth())

    def set_state(self, state: IndicatorState) -> None:
        self.states.append(state)

    def close(self) -> None:
        pass


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path) as opened:
        yield opened


def make_scanner(
    journal: Journal,
    indicator: Indicator,
    source: FrameSource | None = None,
    health: Health | None = None,
    notify: Callable[[], None] | None = None,
) -> Scanner:
    return Scanner(
        source=source or ListSource([]),
        decoder=PyzbarDecoder(),
        debounce=Debounce(3.0),
        policy=Policy("log"),
        indicator=indicator,
        journal=journal,
        builder=EventBuilder(
            device_id="gate-1",
            site_id="hq",
            direction=Direction.IN,
            boot_id="boot-1",
            clock=FixedSyncClock(synced=False),
        ),
        health=health or Health(),
        notify_uplink=notify or (lambda: None),
    )


def test_light_comes_before_the_journal_write(journal: Journal) -> None:
    indicator = JournalWatchingIndicator(journal)
    scanner = make_scanner(journal, indicator)
    scans = scanner.process(render_code(CARD, frame_size=SIZE))
    assert len(scans) == 1
    assert indicator.depth_when_lit == [0]  # lit while the journal was still empty
    assert journal.outbox_depth() == 1


def test_a_card_becomes_a_journaled_event_with_exact_vietnamese_name(journal: Journal) -> None:
    notified: list[int] = []
    scanner = make_scanner(
        journal, JournalWatchingIndicator(journal), notify=lambda: notified.append(1)
    )
    [scan] = scanner.process(render_code(CARD, frame_size=SIZE))
    [pending] = journal.pending()
    assert pending == scan.event
    assert pending.subject_name == "Nguyễn Thị Thu Uyên"
    assert pending.subject_id == "079203012345"
    assert pending.status is VerdictStatus.RECORDED
    assert pending.clock_synced is False
    assert pending.seq == 1
    assert notified == [1]


def test_the_same_code_on_many_frames_is_one_event(journal: Journal) -> None:
    scanner = make_scanner(journal, JournalWatchingIndicator(journal))
    frame = render_code(CARD, frame_size=SIZE)
    results = [scanner.process(frame) for _ in range(10)]
    assert [len(r) for r in results] == [1] + [0] * 9
    assert journal.outbox_depth() == 1
    assert scanner.stats.frames == 10


def test_empty_frames_make_no_events(journal: Journal) -> None:
    scanner = make_scanner(journal, JournalWatchingIndicator(journal))
    assert scanner.process(blank_frame(SIZE, noise=8.0)) == []
    assert journal.outbox_depth() == 0


def test_verdict_drives_the_gpio_pins_on_mock_factory(journal: Journal) -> None:
    factory = MockFactory()
    gpio = GpioIndicator(IndicatorPins(), pin_factory=factory)
    try:
        scanner = make_scanner(journal, TeeIndicator(gpio))
        scanner.process(render_code(CARD, frame_size=SIZE))
        assert factory.pin(17).state  # green on at once, before process() returned
        assert not factory.pin(27).state
    finally:
        gpio.close()


class FullDisk:
    def __init__(self) -> None:
        self.full = True

    def __call__(self, fd: int, data: bytes) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        write_fully(fd, data)


def test_full_disk_still_lights_and_reports_a_storage_fault(tmp_path: Path) -> None:
    disk = FullDisk()
    health = Health()
    with Journal(tmp_path, writer=disk) as journal:
        indicator = JournalWatchingIndicator(journal)
        scanner = make_scanner(journal, indicator, health=health)
        [scan] = scanner.process(render_code(CARD, frame_size=SIZE))
        assert indicator.depth_when_lit == [0]
        assert not scan.journaled
        assert health.faults == [STORAGE_FAULT]
        disk.full = False
        other = cccd_payload("001099012345", "Trần Văn Đức", "01011990", "Nam", "HN", "15082021")
        [second] = scanner.process(render_code(other, frame_size=SIZE))
        assert second.journaled
        assert health.faults == []


def test_camera_failure_is_a_fault_and_the_loop_keeps_going(journal: Journal) -> None:
    stop = threading.Event()
    source = ListSource([render_code(CARD, frame_size=SIZE)], stop=stop)
    health = Health()
    seen: list[list[str]] = []
    health.watch(lambda h: seen.append(h.faults))
    scanner = make_scanner(journal, JournalWatchingIndicator(journal), source=source, health=health)
    scans: list[Scan] = []
    scanner.on_scan = scans.append
    scanner.run(stop, max_backoff=0.01)
    assert len(scans) == 1
    assert source.failures == 1
    assert seen == [[CAMERA_FAULT]]
    assert health.indicator_state() is IndicatorState.FAULT
