"""The one slot between the capture thread and the decode thread: `put` always replaces, `take`
gets the newest frame.

Why one slot and not a queue: a camera delivers frames at its own pace, and a decode sometimes
takes longer than a frame period (a hard frame for the ensemble, a journal fsync, a CPU busy with
a backlog flush). A queue would make every later frame older, and the light would answer a code
shown seconds ago. With one slot the decode thread always takes the newest frame: the time from
a frame's arrival to its verdict stays under one decode plus the decode in progress, whatever
the load, and a slow decode costs frames (counted), never latency.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from device.camera.source import Frame


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
        """Offer the newest frame; a closed slot gives it back at once.

        A replaced frame is given back before the slot's lock is let go: while the putter is
        still inside `put` it holds a view of the new frame (its argument, the caller's
        variable), and a taker that took, decoded and gave back the new frame meanwhile (the
        old frame's release can let go of the GIL: an unmap) would unmap a buffer still seen."""
        with self._lock:
            if self._closed:
                del frame
                if release is not None:
                    release()
                return
            stale = self._slot
            self.handed += 1
            self._slot = HandedFrame(frame, self._clock(), self.handed, release)
            del frame
            if stale is None:
                self._ready.release()  # the slot was empty: wake the taker
                return
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
