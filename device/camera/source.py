"""Where frames come from: the `FrameSource` protocol, its error, and the pacing its backends share.

Backends live beside this module and are imported by name, so that a PC never imports picamera2:

- `device.camera.picamera2.Picamera2Source`: the Pi camera (lores YUV420 stream, Y plane).
- `device.camera.opencv.OpenCVSource`: a USB camera, a video file or an RTSP stream.
- `device.camera.replay.ReplaySource`: a folder of images (demo, benchmarks, tests).

`ReopeningSource` wraps any of them so that a camera missing at start or failing later is a
CameraError from `read()` (which the frame loop retries with backoff), never a crash.

A source whose frames live in buffers it must get back (the Pi camera's DMA buffers) also offers
`read_lease()`: the frame as a view of the buffer plus the call that hands the buffer back. The
frame pipeline (device/frames/) reads through `read_leased`, which gives every source that
shape, and releases each lease once the frame is decoded or dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import NamedTuple, Protocol, Self, TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Frame: TypeAlias = npt.NDArray[np.uint8]
"""One grey image, 2-D (height, width), uint8. Treat it as read-only: sources may reuse buffers."""


_Read = TypeVar("_Read")


class CameraError(RuntimeError):
    """The camera failed: it could not be opened or read, or gave no frame in time."""


class CameraSetupError(CameraError):
    """The camera cannot work until a person fixes the installation (a library missing, too old
    or built against another numpy): retrying it changes nothing, so it is reported once."""


class FrameSource(Protocol):
    """A camera, or anything that stands in for one."""

    def read(self) -> Frame:
        """Block until the next frame, paced to the source's frame rate; raise CameraError."""
        ...

    def close(self) -> None:
        """Release the device. Safe to call twice."""
        ...


class FrameLease(NamedTuple):
    """A frame and, for a lent buffer, the call that gives it back (None: nothing to give back).

    The frame is valid until `release` is called; the holder calls it exactly once."""

    frame: Frame
    release: Callable[[], None] | None = None


def read_leased(source: FrameSource) -> FrameLease:
    """The next frame of `source` as a lease: its own `read_lease()` if it lends buffers, else
    `read()` with nothing to give back. Raises CameraError as `read()` does."""
    read_lease: Callable[[], FrameLease] | None = getattr(source, "read_lease", None)
    if read_lease is not None:
        return read_lease()
    return FrameLease(source.read())


class ClosingSource:
    """Context-manager support for a frame source: `with Source(...) as source:`."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class FramePacer:
    """Holds a file-fed source to `fps`, as a real camera is held by its sensor.

    The first frame is due at once, then one every 1/fps. A consumer that falls more than a frame
    behind restarts the schedule rather than getting a burst of frames to catch up: a camera drops
    frames, it never delivers old ones faster.
    """

    def __init__(
        self,
        fps: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, not {fps!r}")
        self.period = 1.0 / fps
        self._clock = clock
        self._sleep = sleep
        self._due: float | None = None

    def wait_for_next_frame(self) -> None:
        now = self._clock()
        if self._due is None or now > self._due + self.period:
            self._due = now
        elif now < self._due:
            self._sleep(self._due - now)
        self._due += self.period


class ReopeningSource(ClosingSource):
    """Opens the camera on the first read, and again on the read after a failed one.

    A gate must come up when its camera is unplugged and recover when it is back, so opening is
    part of reading: `open_camera` runs in the frame loop, where its CameraError is a camera fault
    retried with backoff. After a failed read the camera is closed and dropped, because the cure
    for a stuck device (a loose cable, a USB reset, a replay folder emptied) is to open it afresh.
    """

    def __init__(self, open_camera: Callable[[], FrameSource]) -> None:
        self._open_camera = open_camera
        self._camera: FrameSource | None = None
        self._closed = False

    @property
    def every_frame(self) -> bool:
        """Whether the open camera is a recording to be decoded frame by frame (False while
        none is open): the frame pipeline asks its source, and this wrapper is that source."""
        return bool(getattr(self._camera, "every_frame", False))

    def read(self) -> Frame:
        return self._read(lambda camera: camera.read())

    def read_lease(self) -> FrameLease:
        """As `read()`, lending the camera's buffer when the camera lends them."""
        return self._read(read_leased)

    def _read(self, read: Callable[[FrameSource], _Read]) -> _Read:
        if self._closed:
            raise CameraError("the camera is closed")
        if self._camera is None:
            self._camera = self._open()
        try:
            return read(self._camera)
        except CameraError:
            self._drop()
            raise

    def close(self) -> None:
        self._closed = True
        self._drop()

    def _open(self) -> FrameSource:
        try:
            return self._open_camera()
        except CameraError:
            raise
        except Exception as exc:  # whatever a driver raises while opening is a camera fault
            raise CameraError(f"cannot open the camera: {exc!r}") from exc

    def _drop(self) -> None:
        camera, self._camera = self._camera, None
        if camera is None:
            return
        try:
            camera.close()
        except Exception as exc:  # a failed camera may fail to close too; reopening goes on
            log.warning("camera: closing after a failure raised %r", exc)
