"""The tap on the frame loop: nothing copied without a session; with one, frames at its rate,
each a valid frame naming the session; a session not renewed lapses by itself and the thread
ends; the scan path's cost with and without a preview (printed)."""

from __future__ import annotations

import threading
import time

import numpy as np

from device.preview.tap import PreviewTap
from protocol.preview.wire import MAX_FRAME_BYTES, unpack_frame
from tests.support.waiting import wait_until

FRAME = np.random.default_rng(1).integers(0, 256, (720, 1280), dtype=np.uint8)


class Sink:
    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.lock = threading.Lock()

    def __call__(self, payload: bytes) -> None:
        with self.lock:
            self.payloads.append(payload)

    def count(self) -> int:
        with self.lock:
            return len(self.payloads)


def feed(tap: PreviewTap, seconds: float, fps: float = 30.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        tap.offer(FRAME, 1)
        time.sleep(1 / fps)


def test_without_a_session_nothing_is_copied_or_made() -> None:
    tap = PreviewTap()
    feed(tap, 0.3)
    assert tap.frames_made == 0 and not tap.active


def test_a_session_gets_frames_at_its_rate_then_lapses_by_itself() -> None:
    tap = PreviewTap(region=(0.1, 0.1, 0.8, 0.8))
    sink = Sink()
    assert tap.start("session-0001", ttl_s=1.5, fps=4, send=sink)
    assert not tap.start("session-0001", ttl_s=1.5, fps=4, send=sink)  # a renewal
    feed(tap, 1.0)
    made = sink.count()
    assert 2 <= made <= 6, made  # 4 a second at most, of 30 offered
    header, jpeg = unpack_frame(sink.payloads[0])
    assert header.session_id == "session-0001" and header.codes == 1
    assert header.focus > 0 and header.peak >= header.focus
    assert len(sink.payloads[0]) <= MAX_FRAME_BYTES and jpeg.startswith(b"\xff\xd8")
    wait_until(lambda: not tap.active, 3.0, "the session to lapse")
    before = sink.count()
    feed(tap, 0.3)
    assert sink.count() == before and tap.sessions() == 0


def test_stop_ends_a_session_at_once() -> None:
    tap = PreviewTap()
    sink = Sink()
    tap.start("session-0002", ttl_s=30, fps=4, send=sink)
    feed(tap, 0.4)
    assert tap.stop("session-0002")
    wait_until(lambda: not tap.active, 2.0, "the thread to end")
    before = sink.count()
    feed(tap, 0.3)
    assert sink.count() == before


def test_the_scan_paths_cost_with_and_without_a_preview() -> None:
    """What `offer` adds to each frame of the decode thread: an attribute read without a
    session; with one, a copy at most `fps` times a second (the picture is made elsewhere)."""
    tap = PreviewTap()
    n = 2000
    started = time.perf_counter()
    for _ in range(n):
        tap.offer(FRAME, 0)
    idle_us = (time.perf_counter() - started) / n * 1e6
    tap.start("session-0003", ttl_s=30, fps=4, send=lambda payload: None)
    started = time.perf_counter()
    for _ in range(n):
        tap.offer(FRAME, 0)
    active_us = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for _ in range(50):
        np.array(FRAME, copy=True)
    copy_us = (time.perf_counter() - started) / 50 * 1e6
    tap.close()
    print(
        f"\noffer per frame: {idle_us:.2f} us without a session, {active_us:.2f} us with one "
        f"(a 1280x720 copy {copy_us:.0f} us, at most 4 a second)"
    )
    assert idle_us < 20
    assert active_us < 200
