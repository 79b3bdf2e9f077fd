"""The frame pipeline's plumbing: a capture thread and a decode thread joined by one slot.

    capture thread (FrameCapture.run)            decode thread (Scanner.run, the caller's)
    source.read_lease() ──put──▶ LatestFrame ──take──▶ Framing ─▶ decoder ─▶ debounce ─▶ ... light
                                 (one slot: the newest frame; an older one not yet taken is
                                  dropped, its buffer given back, and counted)

Why one slot and not a queue: a camera delivers frames at its own pace, and a decode sometimes
takes longer than a frame period (a hard frame for the ensemble, a journal fsync, a CPU busy with
a backlog flush). A queue would make every later frame older, and the light would answer a code
shown seconds ago. With one slot the decode thread always takes the newest frame: the time from
a frame's arrival to its verdict stays under one decode plus the decode in progress, whatever
the load, and a slow decode costs frames (counted), never latency.

The capture thread owns the camera's failures: a CameraError raises the `camera` fault and is
retried with backoff (1, 2, 4 ... 30 s), waiting on the stop event so that stopping is prompt.
The fault clears when a frame captured after the last failure has been decoded (`frame_decoded`),
so a decode thread that stalls cannot have the fault cleared under it by a healthy camera.

`Framing` is the region of interest and the decode scale: the region is a numpy view of the frame
(no copy); a scale below 1 resizes the region (INTER_AREA) before decoding.

`SceneWatch` (device/pipeline_scene.py) spares the decoder frames that show nothing new.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from device.camera import CameraError, Frame, FrameSource, read_leased
from device.health import Health

log = logging.getLogger("gatescan.pipeline")

CAMERA_FAULT = "camera"


class HandedFrame(NamedTuple):
    """A frame in the slot: when it was handed over (monotonic s) and its number (1, 2, ...).

    A named tuple rather than a dataclass: one is built for every frame, under the slot's lock."""

    frame: Frame
    handed_at: float
    number: int
    release: Callable[[], None] | None = None


class LatestFrame:
    """A one-slot handoff: `put` always replaces, `take` gets the newest frame.

    A frame replaced before it was taken is dropped: its buffer is given back (its `release`,
    called by the putting thread) and it is counted in `dropped`. Nothing ever queues.

    Why a lock as the signal and not a Condition: the decode thread waits on `_ready`, a plain
    lock that is held exactly while the slot is empty and open, and `put` into an empty slot
    releases it. The waiter then wakes with one futex wake and takes the frame without queueing
    for the Condition's own lock again; a Condition's waiter costs a lock allocated per wait, a
    second lock round trip and more bytecode on both threads (about 10 us more per handoff in a
    two-thread micro-benchmark on the 2-core dev VM), and every microsecond here is latency
    before the light.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()  # guards the slot, the counters and `_closed`
        self._taken = threading.Condition(self._lock)  # wait_taken() waits on it
        # Held while the slot is empty and open, free while it holds a frame or is closed.
        self._ready = threading.Lock()
        self._ready.acquire()
        self._slot: HandedFrame | None = None
        self._closed = False
        self._watchers = 0  # threads in wait_taken(): only then does a take notify
        self.handed = 0
        """Frames put so far (also the number of the last one)."""
        self.dropped = 0
        """Frames replaced before they were taken."""

    def put(self, frame: Frame, release: Callable[[], None] | None = None) -> None:
        """Offer the newest frame; a closed slot gives it back at once."""
        with self._lock:
            if self._closed:
                stale_release = release
            else:
                stale = self._slot
                self.handed += 1
                self._slot = HandedFrame(frame, self._clock(), self.handed, release)
                if stale is None:
                    stale_release = None
                    self._ready.release()  # the slot was empty: wake the taker
                else:
                    self.dropped += 1
                    stale_release = stale.release
                    del stale  # the buffer may be unmapped only when no view of it is left
        if stale_release is not None:
            stale_release()

    def take(self, timeout: float | None = None) -> HandedFrame | None:
        """The newest frame, waiting up to `timeout` s for one; None if none came (or closed).

        A frame left in a closed slot is still handed out: the last one is decoded."""
        if not self._ready.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            return None
        with self._lock:
            handed, self._slot = self._slot, None
            if self._closed:
                self._ready.release()  # closed stays free: later takes return at once
            if self._watchers:
                self._taken.notify_all()
            return handed

    def wait_taken(self, timeout: float | None = None) -> bool:
        """Wait until the slot is empty (the frame in it was taken); False on timeout."""
        with self._taken:
            self._watchers += 1
            try:
                return self._taken.wait_for(lambda: self._slot is None, timeout)
            finally:
                self._watchers -= 1

    def close(self) -> None:
        """No more frames: `take` stops waiting; later frames are given back as they come."""
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._slot is None:
                    self._ready.release()
            self._taken.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def discard(self) -> None:
        """Give back a frame left in the slot (the pipeline stopped before decoding it)."""
        with self._lock:
            handed, self._slot = self._slot, None
            if handed is not None and not self._closed:
                # Empty again: hold the signal (a taker that got it first finds the slot empty).
                self._ready.acquire(blocking=False)
            release = handed.release if handed is not None else None
            del handed
            self._taken.notify_all()
        if release is not None:
            release()


class FrameCapture:
    """The capture thread's loop: read the camera, put each frame in the slot, survive failures."""

    def __init__(
        self,
        source: FrameSource,
        slot: LatestFrame,
        health: Health,
        *,
        first_backoff: float = 1.0,
        max_backoff: float = 30.0,
    ) -> None:
        self.source = source
        self.slot = slot
        self.health = health
        # A recording (replayed images) is decoded frame by frame: a slow decode slows the replay
        # instead of dropping frames. A live camera keeps only the newest frame.
        self.every_frame: bool = bool(getattr(source, "every_frame", False))
        self.first_backoff = min(first_backoff, max_backoff)
        self.max_backoff = max_backoff
        self.failures = 0
        self._lock = threading.Lock()  # orders the fault's raise (here) and clear (decode thread)
        self._failed_after = 0  # frames handed before the last failure

    def run(self, stop: threading.Event) -> None:
        """Capture until `stop` is set; then close the slot so that the decode thread ends."""
        backoff = self.first_backoff
        try:
            while not stop.is_set():
                try:
                    frame, release = read_leased(self.source)
                except Exception as exc:
                    self._failed(exc, backoff)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, self.max_backoff)
                    continue
                backoff = self.first_backoff
                self.slot.put(frame, release)
                del frame  # a lent buffer may be given back only when no view of it is left
                if self.every_frame:
                    self._wait_until_taken(stop)
        finally:
            self.slot.close()

    def _wait_until_taken(self, stop: threading.Event) -> None:
        while not self.slot.wait_taken(timeout=0.1):
            if stop.is_set() or self.slot.closed:
                return

    def frame_decoded(self, number: int) -> None:
        """The decode thread finished frame `number`: the camera works if it came after the last
        failure, which clears the `camera` fault (also one the frame watch raised)."""
        with self._lock:
            if number > self._failed_after:
                self.health.clear_fault(CAMERA_FAULT)

    def _failed(self, exc: Exception, backoff: float) -> None:
        self.failures += 1
        with self._lock:
            self._failed_after = self.slot.handed
            self.health.set_fault(CAMERA_FAULT)
        if isinstance(exc, CameraError):
            log.error("camera: %s; retrying in %.0f s", exc, backoff)
        else:  # a driver's own error: a camera fault all the same, with its traceback
            log.error("camera: unexpected %r; retrying in %.0f s", exc, backoff, exc_info=exc)


Region = tuple[float, float, float, float]  # x, y, width, height as fractions of the frame


@dataclass(frozen=True)
class Framing:
    """What part of each frame is decoded, and at what scale.

    `region`: (x, y, width, height) as fractions of the frame (0..1), None for the whole frame;
    cut as a numpy view, so it costs nothing. `scale` below 1 shrinks the region before decoding:
    fewer pixels to search, for codes large enough to stay readable (about 3 pixels per module).
    """

    region: Region | None = None
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.scale <= 1:
            raise ValueError(f"the decode scale must be in (0, 1], not {self.scale}")
        if self.region is not None:
            x, y, width, height = self.region
            if min(x, y) < 0 or width <= 0 or height <= 0 or x + width > 1 or y + height > 1:
                raise ValueError(f"the region {self.region} is not inside the frame (0..1)")

    def apply(self, frame: Frame) -> Frame:
        """The part of `frame` to decode: a view when only a region is cut."""
        return self.shrink(self.cut(frame))

    def cut(self, frame: Frame) -> Frame:
        """The region of `frame`, as a view (the frame itself without a region)."""
        if self.region is None:
            return frame
        return frame[region_slices(self.region, frame.shape[0], frame.shape[1])]

    def shrink(self, region: Frame) -> Frame:
        """`region` at the decode scale (itself at scale 1)."""
        if self.scale >= 1:
            return region
        height, width = region.shape[:2]
        size = (max(1, round(width * self.scale)), max(1, round(height * self.scale)))
        return np.asarray(cv2.resize(region, size, interpolation=cv2.INTER_AREA), np.uint8)


def region_slices(region: Region, height: int, width: int) -> tuple[slice, slice]:
    """(rows, columns) of `region` in a frame of this size; never empty."""
    x, y, w, h = region
    left, top = min(int(x * width), width - 1), min(int(y * height), height - 1)
    right = max(left + 1, min(width, round((x + w) * width)))
    bottom = max(top + 1, min(height, round((y + h) * height)))
    return slice(top, bottom), slice(left, right)
