"""The frame pipeline: the one-slot handoff, the capture thread, and the scanner running both.

Real parts throughout: real zbar, real journal files; frames come from memory, from a list, or
from the fake picamera2 (the hardware boundary).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from device.camera.memory import MemorySource
from device.camera.picamera2 import Picamera2Source
from device.camera.source import CameraError, Frame, FrameSource, ReopeningSource
from device.decode.zbar import PyzbarDecoder
from device.frames.capture import FrameCapture
from device.frames.handoff import LatestFrame
from device.frames.scene import SceneWatch
from device.frames.stats import ScanStats
from device.indicator.base import TeeIndicator
from device.journal.journal import Journal
from device.scanner import Scanner
from device.system.clock import FixedSyncClock
from device.system.health import Fault, Health
from device.verdict.debounce import Debounce
from device.verdict.events import EventBuilder
from device.verdict.policy import Policy
from gatescan.testing.fake_buffers import FakeMappedArray
from gatescan.testing.fake_picamera2 import FakePicamera2
from gatescan.testing.samples import blank_frame, render_code
from protocol.verdicts import Direction
from tests.support.waiting import wait_until


def frame_of(value: int) -> Frame:
    return np.full((4, 4), value, dtype=np.uint8)


class Releases:
    """Notes which frames were given back."""

    def __init__(self) -> None:
        self.given_back: list[int] = []

    def of(self, value: int) -> tuple[Frame, Callable[[], None]]:
        return frame_of(value), lambda: self.given_back.append(value)


# --- LatestFrame: the slot ------------------------------------------------------------------------


def test_the_newest_frame_wins_and_replaced_frames_are_dropped_counted_and_given_back() -> None:
    slot, releases = LatestFrame(), Releases()
    for value in (1, 2, 3):
        slot.put(*releases.of(value))
    handed = slot.take(timeout=0)
    assert handed is not None
    assert int(handed.frame[0, 0]) == 3 and handed.number == 3
    assert (slot.handed, slot.dropped) == (3, 2)
    assert releases.given_back == [1, 2], "the stale frames' buffers went back at once"


def test_a_thousand_frames_put_leave_one_frame_in_the_slot_never_a_queue() -> None:
    slot = LatestFrame()
    for value in range(1000):
        slot.put(frame_of(value % 256))
    first = slot.take(timeout=0)
    assert first is not None and first.number == 1000
    assert slot.take(timeout=0) is None, "nothing queued behind the newest frame"
    assert slot.dropped == 999


def test_take_without_a_frame_returns_none_once_its_timeout_has_passed() -> None:
    assert LatestFrame().take(timeout=0.01) is None


def test_take_wakes_when_another_thread_puts_a_frame() -> None:
    slot = LatestFrame()
    taken: list[int] = []

    def take() -> None:
        handed = slot.take(timeout=30)
        taken.append(handed.number if handed is not None else 0)

    taker = threading.Thread(target=take)
    taker.start()
    slot.put(frame_of(7))
    taker.join(timeout=30)
    assert taken == [1]
    assert slot.wait_taken(timeout=0)


def test_a_closed_slot_hands_out_its_last_frame_then_nothing_and_gives_later_frames_back() -> None:
    slot, releases = LatestFrame(), Releases()
    slot.put(*releases.of(1))
    slot.close()
    slot.put(*releases.of(2))
    assert releases.given_back == [2], "a frame put after closing is given back at once"
    handed = slot.take(timeout=30)
    assert handed is not None and int(handed.frame[0, 0]) == 1
    assert slot.take(timeout=30) is None, "closed and empty: no waiting"


def test_discard_gives_back_the_frame_left_in_the_slot() -> None:
    slot, releases = LatestFrame(), Releases()
    slot.put(*releases.of(5))
    slot.discard()
    assert releases.given_back == [5]
    assert slot.take(timeout=0) is None


def test_closing_wakes_a_taker_waiting_on_an_empty_slot() -> None:
    slot = LatestFrame()
    taken: list[object] = []
    taker = threading.Thread(target=lambda: taken.append(slot.take(timeout=30)))
    taker.start()
    slot.close()
    taker.join(timeout=30)
    assert not taker.is_alive() and taken == [None]


def test_wait_taken_wakes_when_the_decode_side_takes_the_frame() -> None:
    slot = LatestFrame()
    slot.put(frame_of(1))
    waited: list[bool] = []
    watcher = threading.Thread(target=lambda: waited.append(slot.wait_taken(timeout=30)))
    watcher.start()
    # the watcher is inside wait_taken (a take only notifies when someone watches)
    wait_until(lambda: slot._watchers == 1, 10, "the watcher waiting")
    assert slot.take(timeout=0) is not None
    watcher.join(timeout=30)
    assert waited == [True]


def test_a_slot_emptied_by_discard_makes_take_wait_again_and_then_get_the_next_frame() -> None:
    slot = LatestFrame()
    slot.put(frame_of(1))
    slot.discard()
    assert slot.take(timeout=0) is None
    slot.put(frame_of(2))
    handed = slot.take(timeout=0)
    assert handed is not None and handed.number == 2
    assert slot.take(timeout=0) is None


# --- FrameCapture: the capture thread's loop ------------------------------------------------------


class ScriptedCamera:
    """Reads frames or failures from a script; at its end stops the loop with a last frame."""

    def __init__(self, script: list[Frame | Exception], stop: threading.Event) -> None:
        self.script = list(script)
        self.stop = stop

    def read(self) -> Frame:
        if not self.script:
            self.stop.set()
            return frame_of(99)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def close(self) -> None:
        pass


def test_the_camera_fault_clears_only_when_a_frame_captured_after_the_failure_is_decoded() -> None:
    stop, health, slot = threading.Event(), Health(), LatestFrame()
    camera = ScriptedCamera([frame_of(1), CameraError("cable loose"), frame_of(2)], stop)
    capture = FrameCapture(camera, slot, health, first_backoff=0.001)
    capture.run(stop)
    assert slot.closed, "the capture loop closes the slot when it ends"
    assert health.faults == [Fault.CAMERA] and capture.failures == 1
    capture.frame_decoded(1)  # taken before the failure: proves nothing about the camera now
    assert health.faults == [Fault.CAMERA]
    capture.frame_decoded(2)
    assert health.faults == []


def test_a_long_camera_backoff_ends_as_soon_as_stop_is_set() -> None:
    stop, health = threading.Event(), Health()
    camera = ScriptedCamera([CameraError("unplugged")] * 3, stop)
    capture = FrameCapture(camera, LatestFrame(), health, first_backoff=60.0, max_backoff=60.0)
    thread = threading.Thread(target=capture.run, args=(stop,))
    thread.start()
    wait_until(lambda: capture.failures == 1, 10, "the first failure")
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive(), "stopping waited out the 60 s backoff"


class Recording(ScriptedCamera):
    """A source that asks for every frame to be decoded, as a replayed recording does."""

    every_frame = True


@pytest.mark.parametrize(
    "as_the_pipeline_sees_it",
    [
        pytest.param(lambda camera: camera, id="the recording itself"),
        # The agent wraps every camera so that it can be reopened (device/app.py): the wrapper
        # must say what the recording says, or a stalled decode drops the recording's frames.
        pytest.param(lambda camera: ReopeningSource(lambda: camera), id="as the agent wraps it"),
    ],
)
def test_a_recording_is_decoded_frame_by_frame_however_slow_the_decode(
    as_the_pipeline_sees_it: Callable[[FrameSource], FrameSource],
) -> None:
    stop, health, slot = threading.Event(), Health(), LatestFrame()
    camera = Recording([frame_of(value) for value in range(1, 21)], stop)
    capture = FrameCapture(as_the_pipeline_sees_it(camera), slot, health)
    thread = threading.Thread(target=capture.run, args=(stop,))
    thread.start()
    taken = []
    while (handed := slot.take(timeout=10)) is not None:  # a decode slower than the camera
        taken.append(int(handed.frame[0, 0]))
    thread.join(timeout=10)
    assert taken == [*range(1, 21), 99] and slot.dropped == 0


def test_a_live_camera_keeps_only_the_newest_frame_for_a_slow_decode() -> None:
    stop, health, slot = threading.Event(), Health(), LatestFrame()
    camera = ScriptedCamera([frame_of(value) for value in range(1, 21)], stop)
    FrameCapture(camera, slot, health).run(stop)  # nobody takes while the camera runs
    handed = slot.take(timeout=0)
    assert handed is not None and int(handed.frame[0, 0]) == 99 and slot.dropped == 20


def test_an_unexpected_driver_error_is_a_camera_fault_not_the_end_of_capture() -> None:
    stop, health, slot = threading.Event(), Health(), LatestFrame()
    camera = ScriptedCamera([OSError(5, "Input/output error"), frame_of(3)], stop)
    capture = FrameCapture(camera, slot, health, first_backoff=0.001)
    capture.run(stop)
    assert capture.failures == 1 and slot.handed == 2


# --- the scanner running both threads -------------------------------------------------------------


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path) as opened:
        yield opened


def scanner_on(source: FrameSource, journal: Journal, health: Health | None = None) -> Scanner:
    return Scanner(
        source=source,
        decoder=PyzbarDecoder(),
        debounce=Debounce(3.0),
        policy=Policy("log"),
        indicator=TeeIndicator(),
        journal=journal,
        builder=EventBuilder(
            device_id="gate-1",
            site_id="hq",
            direction=Direction.IN,
            boot_id="boot-1",
            clock=FixedSyncClock(),
        ),
        health=health or Health(),
        notify_uplink=lambda: None,
    )


def stop_after(scanner: Scanner, frames: int, stop: threading.Event) -> None:
    decoded = [0]

    def progress() -> None:
        decoded[0] += 1
        if decoded[0] >= frames:
            stop.set()

    scanner.on_progress = progress


def test_a_camera_faster_than_the_decoder_drops_stale_frames_and_counts_them(
    journal: Journal,
) -> None:
    # An unpaced source hands frames far faster than zbar decodes noisy 640x480 ones.
    frames = [blank_frame((640, 480), noise=8.0, seed=seed) for seed in range(4)]
    scanner = scanner_on(MemorySource(frames, pace=False), journal)
    stop = threading.Event()
    stop_after(scanner, 8, stop)
    scanner.run(stop)
    slot = scanner.handoff
    assert scanner.stats.frames >= 8
    assert slot.dropped > 0
    assert scanner.stats.dropped_total == slot.dropped, "every frame never taken is counted"
    left_in_slot = slot.handed - scanner.stats.frames - slot.dropped
    assert left_in_slot in (0, 1), "decoded, dropped or discarded at the end: nothing queued"


def test_stopping_a_scanner_whose_camera_fails_is_prompt(journal: Journal) -> None:
    stop, health = threading.Event(), Health()

    class Unplugged:
        def read(self) -> Frame:
            raise CameraError("cannot open camera '/dev/video0'")

        def close(self) -> None:
            pass

    scanner = scanner_on(Unplugged(), journal, health)
    running = threading.Thread(target=scanner.run, args=(stop,))
    running.start()
    wait_until(lambda: health.faults == [Fault.CAMERA], 10, "the camera fault")
    stop.set()
    running.join(timeout=10)
    assert not running.is_alive()


def test_pi_camera_buffers_lent_to_the_pipeline_are_all_given_back_unmapped(
    journal: Journal,
) -> None:
    camera = FakePicamera2()

    def open_camera() -> Picamera2Source:
        return Picamera2Source(
            width=320, height=240, camera_factory=lambda: camera, map_array=FakeMappedArray
        )

    scanner = scanner_on(ReopeningSource(open_camera), journal)
    stop = threading.Event()
    stop_after(scanner, 20, stop)
    scanner.run(stop)
    assert scanner.stats.frames >= 20
    assert camera.held == [], "every request went back: decoded, dropped or discarded"
    assert camera.unmap_failures == 0, "no view of a buffer outlived its release"
    assert camera.most_held <= 3, "one decoding, one in the slot, one being captured"


def test_stats_snapshot_reports_the_frames_dropped_in_its_interval() -> None:
    stats = ScanStats(clock=lambda: 0.0)
    stats.add_dropped(3)
    stats.add_frame(0.002)
    first = stats.snapshot()
    assert (first.dropped, first.decode_ms) == (3, 2.0)
    assert stats.snapshot().dropped == 0 and stats.dropped_total == 3


# --- SceneWatch: unchanged frames are not decoded ---------------------------------------------


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lane(seed: int, noise: float = 8.0) -> Frame:
    """The same empty lane, with fresh sensor noise for each `seed`."""
    return blank_frame((1280, 720), noise=noise, seed=seed, background=128)


def watch_frames(watch: SceneWatch, clock: FakeMonotonic, frames: list[Frame]) -> list[bool]:
    """Which of `frames`, one every 1/30 s, the decode loop would decode."""
    decoded = []
    for frame in frames:
        worth = watch.worth_decoding(frame)
        if worth:
            watch.decoded(frame)
        decoded.append(worth)
        clock.now += 1 / 30
    return decoded


def test_a_still_scene_with_fresh_sensor_noise_is_not_decoded_once_it_settled() -> None:
    clock = FakeMonotonic()
    watch = SceneWatch(settle_s=0.49, recheck_s=60, clock=clock)
    decoded = watch_frames(watch, clock, [lane(seed) for seed in range(25)])
    # The first frame is new: the scene counts as moving for 0.49 s (15 frames), all decoded;
    # then noise alone is no change.
    assert decoded == [True] * 15 + [False] * 10
    assert not watch.active


def test_a_still_scene_is_decoded_again_at_each_recheck() -> None:
    clock = FakeMonotonic()
    watch = SceneWatch(settle_s=0, recheck_s=0.25, clock=clock)
    decoded = watch_frames(watch, clock, [lane(seed) for seed in range(10)])
    assert decoded == [True] + [False] * 7 + [True, False], "the 8th frame after is 0.27 s on"


def test_a_code_coming_into_a_still_scene_is_decoded_at_once_and_wakes_the_watch() -> None:
    clock = FakeMonotonic()
    watch = SceneWatch(settle_s=1.0, recheck_s=60, clock=clock)
    watch_frames(watch, clock, [lane(seed) for seed in range(40)])
    assert not watch.active
    shown = render_code(b"VISITOR-1", frame_size=(1280, 720), module_px=4, background=128)
    assert watch_frames(watch, clock, [shown]) == [True]
    assert watch.active, "while people are in view, frames are decoded first, compared after"


def test_a_change_of_size_is_a_change() -> None:
    clock = FakeMonotonic()
    watch = SceneWatch(settle_s=0, clock=clock)
    assert watch_frames(watch, clock, [lane(0), lane(1)[:360]]) == [True, True]


def test_the_agents_loop_skips_unchanged_frames_and_still_reports_progress(
    journal: Journal,
) -> None:
    frames = [lane(seed) for seed in range(4)]
    stop = threading.Event()

    class Lockstep:
        """Each frame once the one before was taken: none dropped."""

        def __init__(self) -> None:
            self.shown = 0

        def read(self) -> Frame:
            assert scanner.handoff.wait_taken(timeout=10)
            if self.shown == len(frames):
                stop.set()
            self.shown += 1
            return frames[min(self.shown - 1, len(frames) - 1)]

        def close(self) -> None:
            pass

    scanner = scanner_on(Lockstep(), journal)
    scanner.scene_watch = SceneWatch(recheck_s=3600, settle_s=0)
    progress: list[int] = []
    scanner.on_progress = lambda: progress.append(1)
    scanner.run(stop)
    assert scanner.stats.frames == 1, "only the first frame of the unchanged lane was decoded"
    assert scanner.stats.unchanged_total == len(progress) - 1 >= 3
