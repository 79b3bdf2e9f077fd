"""The capture thread's loop: read the camera, put each frame in the one slot, survive failures.

    capture thread (FrameCapture.run)            decode thread (Scanner.run, the caller's)
    source.read_lease() ──put──▶ LatestFrame ──take──▶ Framing ─▶ decoder ─▶ debounce ─▶ ... light
                                 (one slot: the newest frame; an older one not yet taken is
                                  dropped, its buffer given back, and counted: handoff.py)

The capture thread owns the camera's failures: a CameraError raises the `camera` fault and is
retried with backoff (1, 2, 4 ... 30 s), waiting on the stop event so that stopping is prompt.
The fault clears when a frame captured after the last failure has been decoded (`frame_decoded`),
so a decode thread that stalls cannot have the fault cleared under it by a healthy camera.

A CameraSetupError (picamera2 too old, or built for another numpy) is not retried: no retry can
fix an installation. It raises the fault, is logged once with what to do, and the thread reads
no more until stopped; the agent stays up to report the fault (the systemd watchdog, which no
frame pings, restarts it in time, and a fixed installation is then picked up).
"""

from __future__ import annotations

import logging
import threading

from device.camera.source import CameraError, CameraSetupError, FrameSource, read_leased
from device.frames.handoff import LatestFrame
from device.system.health import Fault, Health

log = logging.getLogger("gatescan.pipeline")


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
        self.first_backoff = min(first_backoff, max_backoff)
        self.max_backoff = max_backoff
        self.failures = 0
        self._lock = threading.Lock()  # orders the fault's raise (here) and clear (decode thread)
        self._failed_after = 0  # frames handed before the last failure

    @property
    def every_frame(self) -> bool:
        """A recording (replayed images) is decoded frame by frame: a slow decode slows the replay
        instead of dropping frames. A live camera keeps only the newest frame. Asked after every
        read: a source that opens its camera on the first read knows only then."""
        return bool(getattr(self.source, "every_frame", False))

    def run(self, stop: threading.Event) -> None:
        """Capture until `stop` is set; then close the slot so that the decode thread ends."""
        backoff = self.first_backoff
        try:
            while not stop.is_set():
                try:
                    frame, release = read_leased(self.source)
                except CameraSetupError as exc:
                    self._failed_for_good(exc)
                    stop.wait()
                    break
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
                self.health.clear_fault(Fault.CAMERA)

    def _failed_for_good(self, exc: CameraSetupError) -> None:
        self.failures += 1
        with self._lock:
            self._failed_after = self.slot.handed
            self.health.set_fault(Fault.CAMERA)
        log.error("camera: %s; not retried: fix the installation, then restart the agent", exc)

    def _failed(self, exc: Exception, backoff: float) -> None:
        self.failures += 1
        with self._lock:
            self._failed_after = self.slot.handed
            self.health.set_fault(Fault.CAMERA)
        if isinstance(exc, CameraError):
            log.error("camera: %s; retrying in %.0f s", exc, backoff)
        else:  # a driver's own error: a camera fault all the same, with its traceback
            log.error("camera: unexpected %r; retrying in %.0f s", exc, backoff, exc_info=exc)
