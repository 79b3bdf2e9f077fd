"""OpenCV's VideoCapture as a frame source: a USB camera, a video file or an RTSP/HTTP stream.

`target` is what a technician writes in the config: "/dev/video0", "0" (a camera index), a video
file, or "rtsp://...". Frames come back grey. A camera or stream is paced by the device itself; a
video file is paced here to its frame rate, so a recorded lane plays at the speed it was filmed.

A failed read raises CameraError and drops the capture; the next read opens it again, which is how
a USB camera that was unplugged and plugged back in comes back (the scanner retries with backoff).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from device.camera.source import CameraError, ClosingSource, Frame, FramePacer

log = logging.getLogger(__name__)

NETWORK_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
NETWORK_TIMEOUT_MS = 5000  # a dead stream must fail the read, not hang the frame loop


class OpenCVSource(ClosingSource):
    """Reads grey frames from cv2.VideoCapture."""

    def __init__(
        self,
        target: str,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        pace: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.target = target
        self._width = width
        self._height = height
        self._fps = fps
        self._capture: cv2.VideoCapture | None = self._open()
        self._pacer = self._file_pacer(pace, clock, sleep)

    def read(self) -> Frame:
        if self._capture is None:
            self._capture = self._open()
        if self._pacer is not None:
            self._pacer.wait_for_next_frame()
        try:
            ok, image = self._capture.read()
        except cv2.error as exc:
            ok, image = False, None
            log.warning("camera %s: read raised %s", self.target, exc)
        if not ok or image is None:
            self._drop_capture()
            raise CameraError(f"no frame from {self.target}: the camera stopped or the video ended")
        return to_grey(image)

    def close(self) -> None:
        self._drop_capture()

    def _open(self) -> cv2.VideoCapture:
        capture = open_capture(self.target)
        if not capture.isOpened():
            capture.release()
            raise CameraError(f"cannot open camera {self.target!r}")
        # Requests, not orders: a camera picks its nearest mode, a file ignores them.
        if self._width is not None:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self._width)
        if self._height is not None:
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self._height)
        if self._fps is not None:
            capture.set(cv2.CAP_PROP_FPS, self._fps)
        return capture

    def _file_pacer(
        self, pace: bool, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> FramePacer | None:
        if not pace or self.target.isdigit() or not Path(self.target).is_file():
            return None
        assert self._capture is not None
        fps = self._fps or self._capture.get(cv2.CAP_PROP_FPS)
        return FramePacer(fps, clock=clock, sleep=sleep) if fps and fps > 0 else None

    def _drop_capture(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def open_capture(target: str) -> cv2.VideoCapture:
    """A VideoCapture for a camera index ("0"), a device path, a file or a stream URL."""
    if target.isdigit():
        return cv2.VideoCapture(int(target))
    if target.lower().startswith(NETWORK_SCHEMES):
        timeouts = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            NETWORK_TIMEOUT_MS,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            NETWORK_TIMEOUT_MS,
        ]
        return cv2.VideoCapture(target, cv2.CAP_FFMPEG, timeouts)
    return cv2.VideoCapture(target)


def to_grey(image: np.ndarray) -> Frame:
    """A BGR, BGRA or already grey OpenCV image as a grey frame."""
    if image.ndim == 2:
        return np.asarray(image, dtype=np.uint8)
    if image.shape[2] == 4:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY), dtype=np.uint8)
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
