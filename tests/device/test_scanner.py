"""The frame loop on real parts: real zbar, real journal files, gpiozero MockFactory pins.

The only fakes are at the hardware boundary: frames come from a list instead of a camera, and
an indicator that notes what the journal held at the moment it was told to light.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from device.camera.replay import ReplaySource
from device.camera.source import CameraError, Frame, FrameSource, ReopeningSource
from device.decode.base import Decoder
from device.decode.zbar import PyzbarDecoder
from device.frames.framing import Framing
from device.frames.unreadable import UnreadableWatch
from device.indicator.base import Indicator, IndicatorState, TeeIndicator, background_state
from device.indicator.gpio import GpioIndicator, IndicatorPins
from device.journal.durable_files import write_fully
from device.journal.journal import Journal
from device.journal.recorder import EventRecorder
from device.scanner import Scan, Scanner, ScanParts
from device.system.clock import FixedSyncClock
from device.system.failpoints import Failpoints
from device.system.health import Fault, Health
from device.verdict.debounce import Debounce
from device.verdict.events import EventBuilder, EventDraft
from device.verdict.policy import Policy
from gatescan.testing.samples import blank_frame, cccd_payload, render_code, sample_draft
from protocol.verdicts import Direction, Reason, VerdictStatus

CARD = cccd_payload("079193012345", "Nguyễn Thị Thu Uyên", "05061993", "Nữ", "Hà Nội", "21042021")
SIZE = (640, 480)


class ListSource:
    """Frames from a list; then the camera 'fails' (CameraError) or the loop is stopped.

    A camera slower than the decoder: each frame is handed over only once the scanner took the
    one before from its handoff slot, so none is dropped (test_pipeline.py covers dropping).
    """

    def __init__(self, frames: list[Frame], stop: threading.Event | None = None) -> None:
        self.frames = list(frames)
        self.stop = stop
        self.failures = 0
        self.scanner: Scanner | None = None

    def read(self) -> Frame:
        if self.scanner is not None:
            assert self.scanner.handoff.wait_taken(timeout=10), "the decode thread took nothing"
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
        self.shown: list[tuple[VerdictStatus, Reason]] = []
        self.states: list[IndicatorState] = []

    def show(self, status: VerdictStatus, reason: Reason) -> None:
        self.depth_when_lit.append(self.journal.outbox_depth())
        self.shown.append((status, reason))

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
    decoder: Decoder | None = None,
    unreadable: UnreadableWatch | None = None,
) -> Scanner:
    scanner = Scanner(
        source=source or ListSource([]),
        decoder=decoder or PyzbarDecoder(),
        unreadable=unreadable,
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
    if isinstance(source, ListSource):
        source.scanner = scanner
    return scanner


def test_light_comes_before_the_journal_write(journal: Journal) -> None:
    indicator = JournalWatchingIndicator(journal)
    scanner = make_scanner(journal, indicator)
    scans = scanner.process(render_code(CARD, frame_size=SIZE))
    assert len(scans) == 1
    assert indicator.depth_when_lit == [0]  # lit while the journal was still empty
    assert journal.outbox_depth() == 1


def test_the_light_is_told_the_verdicts_status_and_reason(journal: Journal) -> None:
    indicator = JournalWatchingIndicator(journal)
    scanner = make_scanner(journal, indicator)
    damaged = CARD.replace(b"05061993", b"35131993")  # a birth date no calendar has
    scanner.process(render_code(CARD, frame_size=SIZE))
    [scan] = scanner.process(render_code(damaged, frame_size=SIZE))
    assert scan.verdict.reason is Reason.INVALID
    assert indicator.shown == [
        (VerdictStatus.RECORDED, Reason.OK),
        (VerdictStatus.RECORDED, Reason.INVALID),  # log mode's amber: "please show it again"
    ]


def test_a_card_becomes_a_journaled_event_with_exact_vietnamese_name(journal: Journal) -> None:
    notified: list[int] = []
    scanner = make_scanner(
        journal, JournalWatchingIndicator(journal), notify=lambda: notified.append(1)
    )
    [scan] = scanner.process(render_code(CARD, frame_size=SIZE))
    [pending] = [entry.event() for entry in journal.pending()]
    assert scan.journaled and pending == scan.event
    assert pending.subject_name == "Nguyễn Thị Thu Uyên"
    assert pending.subject_id == "079193012345"
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


def test_the_drop_after_light_failpoint_lights_then_forgets_the_nth_showing_silently(
    journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gatescan.scanner")
    indicator = JournalWatchingIndicator(journal)
    scanner = make_scanner(journal, indicator)
    scanner.failpoints = Failpoints.parse("agent.drop_after_light=drop:2")
    other = cccd_payload("001090012345", "Trần Văn Đức", "01011990", "Nam", "HN", "15082021")
    third = cccd_payload("001090012346", "Trần Văn Đức", "01011990", "Nam", "HN", "15082021")
    scans = [
        scanner.process(render_code(code, frame_size=SIZE))[0] for code in (CARD, other, third)
    ]
    assert indicator.depth_when_lit == [0, 1, 1], "all three lit"
    assert [scan.journaled for scan in scans] == [True, False, True]
    assert [entry.event().seq for entry in journal.pending()] == [1, 2]
    assert scanner.recorder.held == 0, "not held either"
    scan_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("shown ")]
    assert len(scan_lines) == 2, "no scan line for the dropped showing"


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
        assert not scan.journaled and isinstance(scan.event, EventDraft)  # no seq yet
        assert health.faults == [Fault.STORAGE]
        disk.full = False
        other = cccd_payload("001090012345", "Trần Văn Đức", "01011990", "Nam", "HN", "15082021")
        [second] = scanner.process(render_code(other, frame_size=SIZE))
        assert second.journaled
        assert health.faults == []
        # The held first scan was journaled before the second: scan order is seq order.
        assert [e.event_id for e in journal.pending()] == [
            scan.event.event_id,
            second.event.event_id,
        ]
        assert [e.seq for e in journal.pending()] == [1, 2]


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def held_recorder(
    journal: Journal, health: Health, clock: FakeMonotonic, max_held: int = 100
) -> tuple[EventRecorder, list[int]]:
    notified: list[int] = []
    recorder = EventRecorder(
        journal=journal,
        health=health,
        notify_uplink=lambda: notified.append(1),
        max_held=max_held,
        retry_every=1.0,
        clock=clock,
    )
    return recorder, notified


def test_held_events_are_journaled_by_themselves_when_space_returns(tmp_path: Path) -> None:
    disk, health, clock = FullDisk(), Health(), FakeMonotonic()
    with Journal(tmp_path, writer=disk) as journal:
        recorder, notified = held_recorder(journal, health, clock)
        drafts = [sample_draft() for _ in range(4)]
        assert [recorder.record(draft) for draft in drafts] == [None] * 4
        assert recorder.held == 4 and health.faults == [Fault.STORAGE]
        disk.full = False
        recorder.retry_if_due()
        assert recorder.held == 4, "not retried before retry_every has passed"
        clock.now += 1.0
        recorder.retry_if_due()  # nobody scans: the frame loop calls this on every turn
        assert recorder.held == 0 and health.faults == []
        pending = journal.pending()
    assert [e.event_id for e in pending] == [draft.event_id for draft in drafts]
    assert [e.seq for e in pending] == [1, 2, 3, 4]
    assert notified == [1]


def test_past_the_bound_the_oldest_held_event_is_dropped_and_counted(tmp_path: Path) -> None:
    disk, health, clock = FullDisk(), Health(), FakeMonotonic()
    with Journal(tmp_path, writer=disk) as journal:
        recorder, _ = held_recorder(journal, health, clock, max_held=3)
        drafts = [sample_draft() for _ in range(5)]
        for draft in drafts:
            recorder.record(draft)
        assert recorder.held == 3 and recorder.dropped == 2
        disk.full = False
        assert recorder.retry_now() == 0
        kept = [e.event_id for e in journal.pending()]
    assert kept == [draft.event_id for draft in drafts[2:]]


def test_a_write_that_failed_after_landing_is_not_journaled_twice(tmp_path: Path) -> None:
    health, clock = Health(), FakeMonotonic()
    with Journal(tmp_path) as journal:
        recorder, _ = held_recorder(journal, health, clock)
        draft = sample_draft()
        landed = journal.record(draft)  # as if the write had landed though it reported a failure
        assert recorder.record(draft) == landed
        assert [(e.event_id, e.seq) for e in journal.pending()] == [(draft.event_id, 1)]
        assert recorder.held == 0 and recorder.dropped == 0


def test_camera_failure_is_a_fault_and_the_loop_keeps_going(journal: Journal) -> None:
    stop = threading.Event()
    source = ListSource([render_code(CARD, frame_size=SIZE)], stop=stop)
    health = Health()
    seen: list[list[Fault]] = []
    health.watch(lambda h: seen.append(h.faults))
    scanner = make_scanner(journal, JournalWatchingIndicator(journal), source=source, health=health)
    scans: list[Scan] = []
    scanner.on_scan = scans.append
    scanner.run(stop, max_backoff=0.01)
    assert len(scans) == 1
    assert source.failures == 1
    assert seen == [[Fault.CAMERA]]
    assert background_state(health) is IndicatorState.FAULT


def test_progress_is_reported_after_each_frame_and_never_on_a_camera_error(
    journal: Journal,
) -> None:
    stop = threading.Event()
    frames = [blank_frame(SIZE)] * 3
    source = ListSource(frames, stop=stop)
    progress: list[float] = []
    scanner = make_scanner(journal, JournalWatchingIndicator(journal), source=source)
    scanner.on_progress = lambda: progress.append(scanner.seconds_since_frame())
    scanner.run(stop, max_backoff=0.01)
    assert len(progress) == 3  # the failed read after them made no progress
    assert all(since < 0.5 for since in progress)


class CountingCamera:
    """A camera that can be opened and fail; notes each open and close."""

    def __init__(self, log: list[str], fail_reads: int) -> None:
        self.log = log
        self.fail_reads = fail_reads
        log.append("open")

    def read(self) -> Frame:
        if self.fail_reads:
            self.fail_reads -= 1
            raise CameraError("no frame in 2 s")
        return blank_frame((64, 48))

    def close(self) -> None:
        self.log.append("close")


def test_reopening_source_opens_on_first_read_and_after_each_failure() -> None:
    log: list[str] = []
    unplugged = [True]

    def open_camera() -> FrameSource:
        if unplugged[0]:
            raise CameraError("cannot open camera '/dev/video0'")
        return CountingCamera(log, fail_reads=1 if not log else 0)

    source = ReopeningSource(open_camera)
    assert log == []  # building the gate opens nothing: a missing camera must not stop it
    with pytest.raises(CameraError, match="cannot open"):
        source.read()
    unplugged[0] = False
    with pytest.raises(CameraError, match="no frame"):
        source.read()
    assert log == ["open", "close"]
    assert source.read().shape == (48, 64)
    assert log == ["open", "close", "open"]
    source.close()
    assert log[-1] == "close"
    with pytest.raises(CameraError, match="closed"):
        source.read()


def refusing_open() -> FrameSource:
    raise PermissionError(13, "Permission denied", "/dev/video0")


def test_a_driver_error_while_opening_is_a_camera_error_not_a_crash() -> None:
    with pytest.raises(CameraError, match="PermissionError"):
        ReopeningSource(refusing_open).read()


def test_a_looping_replay_whose_images_vanish_fails_and_recovers_when_they_return(
    tmp_path: Path,
) -> None:
    lane = tmp_path / "lane.png"
    lane.write_bytes(encode_png(render_code(CARD, frame_size=SIZE)))
    source = ReplaySource(tmp_path, fps=10, hold=0.1, loop=True, pace=False)
    assert source.read().shape == (SIZE[1], SIZE[0])
    lane.unlink()  # the camera stops delivering: read() must fail, not spin for ever
    for _ in range(2):
        with pytest.raises(CameraError, match="no readable image"):
            source.read()
    lane.write_bytes(encode_png(blank_frame(SIZE)))
    assert source.read().shape == (SIZE[1], SIZE[0])


def encode_png(frame: Frame) -> bytes:
    ok, png = cv2.imencode(".png", frame)
    assert ok
    return bytes(png)


class BrokenScreen(JournalWatchingIndicator):
    """An indicator whose terminal went away: every verdict raises."""

    def show(self, status: VerdictStatus, reason: Reason) -> None:
        raise BrokenPipeError("terminal went away")


def test_a_frame_that_fails_is_logged_and_the_loop_goes_on(journal: Journal) -> None:
    stop = threading.Event()
    card = render_code(CARD, frame_size=SIZE)
    source = ListSource([card, blank_frame(SIZE), blank_frame(SIZE)], stop=stop)
    progress: list[int] = []
    scanner = make_scanner(journal, BrokenScreen(journal), source=source)
    scanner.on_progress = lambda: progress.append(1)
    scanner.run(stop, max_backoff=0.01)
    assert scanner.frame_errors == 1
    assert len(progress) == 2  # the two frames after the failure were processed


def test_a_code_in_view_that_nothing_reads_asks_to_be_shown_again_and_records_nothing(
    journal: Journal,
) -> None:
    """A damaged code zxing finds but nothing reads: after a second of it, the amber "show it
    again" (the rescan family), then at most every 4 s; a code read puts an end to it."""
    from device.decode.backends import make_decoder
    from gatescan.testing.samples import render_code

    payload = "079193012345||Nguyễn Thị Thu Uyên|05061993|Nữ|Huế|21042021".encode()
    good = render_code(payload, frame_size=(1280, 720), module_px=6)
    ys, xs = np.nonzero(good < 128)
    top, left, height, width = ys.min(), xs.min(), np.ptp(ys), np.ptp(xs)
    damaged = good.copy()  # the middle of the symbol gone: found, never read
    damaged[top + height * 3 // 10 : top + height * 7 // 10,
            left + width * 3 // 10 : left + width * 7 // 10] = 255  # fmt: skip
    clock = FakeMonotonic()
    indicator = JournalWatchingIndicator(journal)
    watch = UnreadableWatch(clock=clock)
    scanner = make_scanner(journal, indicator, decoder=make_decoder("ensemble"), unreadable=watch)
    asked = []
    for moment in (0.0, 0.5, 0.9, 1.1, 2.0, 4.0, 5.2, 5.5):
        clock.now = moment
        before = len(indicator.shown)
        scanner.process(damaged)
        if len(indicator.shown) > before:
            asked.append(moment)
    assert asked == [1.1, 5.2]
    assert set(indicator.shown) == {(VerdictStatus.RECORDED, Reason.INVALID)}  # amber, no event
    assert journal.outbox_depth() == 0
    clock.now = 6.0
    scanner.process(good)
    clock.now = 7.5
    scanner.process(damaged)  # the unread symbol's second starts again after a read
    assert len(indicator.shown) == 3 and journal.outbox_depth() == 1


def test_parts_changed_live_decide_from_the_next_frame_and_the_repeat_window_remembers(
    journal: Journal,
) -> None:
    """A config applied live (device/live_config.py): the next frame is decided with the new
    policy, event builder, region and window; a code already in view stays one showing."""
    indicator = JournalWatchingIndicator(journal)
    scanner = make_scanner(journal, indicator)
    frame = render_code(CARD, frame_size=SIZE)
    [first] = scanner.process(frame)
    assert (first.verdict.status, first.event.direction) == (VerdictStatus.RECORDED, Direction.IN)
    builder = EventBuilder(
        device_id="gate-1",
        site_id="hq",
        direction=Direction.OUT,
        boot_id="boot-1",
        clock=FixedSyncClock(synced=False),
    )
    parts = ScanParts(
        decoder=scanner.decoder,
        policy=Policy("access"),  # no site policy held: access mode grants nobody
        builder=builder,
        framing=Framing(region=(0.0, 0.0, 1.0, 1.0)),
        repeat_window=0.0,
    )
    scanner.change_parts(parts)
    assert scanner.policy.mode == "log", "nothing changes until the loop takes the next frame"
    [again] = scanner.process(frame)  # the window is 0 now: the same code is a new showing
    assert (again.verdict.status, again.event.direction) == (VerdictStatus.DENIED, Direction.OUT)
    assert scanner.debounce.window == 0.0 and scanner.framing is parts.framing
    assert indicator.shown[-1][0] is VerdictStatus.DENIED
