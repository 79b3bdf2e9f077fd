"""The Raspberry Pi camera through picamera2, as grey frames with no copy.

picamera2 comes from Raspberry Pi OS (apt) and imports libcamera when imported, so it is imported
here only, inside `Picamera2Source`, and only when no `camera_factory` is given.

The camera runs a lores YUV420 stream of the asked size. A YUV420 array from picamera2 is
(height * 3 / 2, stride): `height` rows of Y (luma, the grey image we want), then the U and V
rows. The stride can be wider than the image (on a Pi 4 the lores rows are padded for the ISP), so
the frame is the view `array[:height, :width]`: no colour conversion, no copy of ours.

Two ways to read:

- `read_lease()`, what the frame pipeline uses: `capture_request()` keeps the completed request
  (its DMA buffers) and `MappedArray` maps the lores buffer as an array without copying it; the
  frame is a view of the Y plane in the camera's own buffer, and the lease's release unmaps it
  and hands the request back to the camera. Nothing is copied between the ISP and the decoder.
- `read()`: `capture_array("lores")`, for callers that keep frames. picamera2 copies the whole
  YUV buffer out of the DMA buffer there (its `make_buffer`), so the frame can outlive the
  request; our Y plane is a view of that copy.

Held buffers: the pipeline holds at most three requests at once (one being decoded, one waiting
in the handoff slot, one being captured), so BUFFER_COUNT leaves the ISP two to fill.

`lores_size` smaller than the frame size is how `decode_scale` costs nothing on a Pi: the ISP
scales the lores stream in hardware, and the main stream keeps the full size.

Stale frames: by default picamera2 holds the last completed frame and hands it to the next
capture, so a read can return a frame exposed before the call. We configure `queue=False`: every
read waits for a frame that completes after it was called. That costs half a frame on average
(17 ms at 30 fps) and guarantees that the frame after a verdict is not one taken before it.

A camera that stops (a loose cable): a read gives up after `read_timeout` (picamera2 0.3.20 and
later honour a numeric `wait`; older ones are refused at open, see pi_install.py). picamera2
keeps the timed-out capture queued as a job, and `stop()` is a job queued behind it that waits
for it without a limit (picamera2 issue #1065), so closing first cancels every queued job
(`cancel_all_and_flush`, as picamera2's own tests/wait_cancel_test.py does), then stops and
closes. Closing runs on a thread of its own and is given CLOSE_TIMEOUT: a stop that still blocks
is stuck in the camera driver (a kernel-level hang, picamera2 issue #1275), which nothing in the
process can undo; it is left behind with an error line, the reopen that follows fails while the
old camera holds the device, no frame is decoded, and the systemd watchdog restarts the agent.

Focus, the frame rate's limit and buffer memory: pi_controls.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from device.camera.pi_controls import (
    Focus,
    check_frame_rate,
    focus_controls,
    report_buffers,
)
from device.camera.pi_install import import_mapped_array, import_picamera2
from device.camera.source import CameraError, ClosingSource, Frame, FrameLease

log = logging.getLogger(__name__)

# Up to three requests are held by the frame pipeline (see above); two more keep the ISP busy.
# picamera2's video default of 6 would only cost camera memory. Every stream gets this many
# buffers, and picamera2 adds a raw stream at the sensor mode's size. At the default 1280x720:
# main YUV420 1280 x 720 x 1.5 = 1.32 MiB, lores the same at decode_scale 1 (0.33 MiB at 0.5),
# raw on Camera Module 3 (1536x864 mode, 10-bit packed rows of 1920 bytes) 1.58 MiB: 4.2 MiB a
# set, 21 MiB for five. At 1920x1080 (2304x1296 mode): 3.0 + 3.0 + 3.6 = 9.5 MiB, 47 MiB for
# five. A Pi 4's CMA pool under Raspberry Pi OS is 508 MiB; a 512 MB board's (Pi Zero 2 W,
# Pi 3) can be as small as the kernel's default 64 MiB, which 1080p nearly fills beside the
# display's buffers; a Pi 5 needs no CMA for them. pi_controls.report_buffers logs the figure at
# every start and warns past 64 MiB.
BUFFER_COUNT = 5
READ_TIMEOUT = 2.0  # seconds without a frame before a read fails: a cable came loose
# A healthy stop and close take well under a second (picamera2's wait_cancel_test expects the
# stop within 0.1 s once cancelled; closing joins its camera thread, which polls every 0.2 s).
# Longer is a driver stuck in the kernel. A read (2 s) plus a close stays within the 6 s the
# scanner gives the capture thread to finish when stopping (device/scanner.py: CAPTURE_JOIN_S).
CLOSE_TIMEOUT = 3.0


class RequestLike(Protocol):
    """The part of picamera2's CompletedRequest this adapter uses."""

    def release(self) -> None: ...


class MappedArrayLike(Protocol):
    """picamera2.MappedArray: a context that maps a request's stream buffer as `array`."""

    @property
    def array(self) -> np.ndarray | None: ...

    def __enter__(self) -> MappedArrayLike: ...

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None: ...


# picamera2.MappedArray(request, stream): the request is picamera2's own CompletedRequest.
MapArray = Callable[[Any, str], MappedArrayLike]


class CameraLike(Protocol):
    """The part of picamera2.Picamera2 this adapter uses (tests pass a fake of exactly this)."""

    def create_video_configuration(
        self,
        *,
        main: Mapping[str, Any],
        lores: Mapping[str, Any],
        controls: Mapping[str, Any],
        buffer_count: int,
        queue: bool,
    ) -> dict[str, Any]: ...

    def configure(self, camera_config: dict[str, Any]) -> None: ...

    def camera_configuration(self) -> dict[str, Any]: ...

    @property
    def camera_controls(self) -> dict[str, tuple[Any, Any, Any]]: ...

    @property
    def sensor_modes(self) -> list[dict[str, Any]]: ...

    def start(self) -> None: ...

    def capture_array(self, name: str = "main", *, wait: float | None = None) -> np.ndarray: ...

    def capture_request(self, *, wait: float | None = None) -> RequestLike: ...

    def cancel_all_and_flush(self) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


class Picamera2Source(ClosingSource):
    """Grey frames from the Pi camera's lores YUV420 stream (its Y plane, a view)."""

    def __init__(
        self,
        *,
        width: int = 1280,
        height: int = 720,
        fps: float = 30.0,
        lores_size: tuple[int, int] | None = None,
        focus: Focus = "auto",
        camera_factory: Callable[[], CameraLike] | None = None,
        map_array: MapArray | None = None,
        read_timeout: float = READ_TIMEOUT,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        """`lores_size`: the size of the frames handed out (default: width x height), at most
        the full size; `focus`: see pi_controls.py; `map_array` stands in for
        picamera2.MappedArray (default: imported at the first `read_lease`). Without a
        `camera_factory` picamera2 is imported here, and a picamera2 that cannot work (too
        old, or built for another numpy) is a CameraSetupError."""
        factory = camera_factory if camera_factory is not None else import_picamera2()
        self._map_array = map_array
        self._read_timeout = read_timeout
        self._close_timeout = close_timeout
        self.abandoned_close: threading.Thread | None = None
        """A close that did not finish within close_timeout, left running (None: none)."""
        try:
            camera = factory()
        except Exception as exc:
            raise CameraError(f"cannot open the Pi camera: {exc}") from exc
        self._camera: CameraLike | None = camera
        try:
            self.width, self.height, self.frame_rate = start_lores_stream(
                camera, (width, height), lores_size or (width, height), fps, focus
            )
        except Exception as exc:
            self.close()
            raise CameraError(f"cannot start the Pi camera at {width}x{height}: {exc}") from exc

    def read(self) -> Frame:
        if self._camera is None:
            raise CameraError("the Pi camera is closed")
        try:
            array = self._camera.capture_array("lores", wait=self._read_timeout)
        except Exception as exc:
            raise CameraError(f"no frame from the Pi camera: {exc!r}") from exc
        return y_plane(array, self.width, self.height)

    def read_lease(self) -> FrameLease:
        """The Y plane as a view of the camera's own buffer, and the call that gives it back."""
        if self._camera is None:
            raise CameraError("the Pi camera is closed")
        map_array = self._map_array = self._map_array or import_mapped_array()
        try:
            request = self._camera.capture_request(wait=self._read_timeout)
        except Exception as exc:
            raise CameraError(f"no frame from the Pi camera: {exc!r}") from exc
        lent = LentBuffer(request)
        try:
            array = lent.map(map_array)
            return FrameLease(y_plane(array, self.width, self.height), lent.release)
        except Exception as exc:
            lent.release()
            if isinstance(exc, CameraError):
                raise
            raise CameraError(f"cannot map the Pi camera's frame: {exc!r}") from exc

    def close(self) -> None:
        """Cancel what is queued, stop, close: on a thread, given close_timeout at most."""
        camera, self._camera = self._camera, None
        if camera is None:
            return
        closing = threading.Thread(
            target=shut_down, args=(camera,), name="camera-close", daemon=True
        )
        closing.start()
        closing.join(self._close_timeout)
        if closing.is_alive():
            self.abandoned_close = closing
            log.error(
                "Pi camera: closing still blocks after %g s: the camera driver is stuck in the "
                "kernel; the close is left on its own thread, reopening will fail while it holds "
                "the camera, and the systemd watchdog restarts the agent when no frame comes",
                self._close_timeout,
            )


def shut_down(camera: CameraLike) -> None:
    """Cancel every queued capture (a timed-out one would hold the stop for ever), stop, close.
    A camera that failed may fail at each step; shutting down goes on regardless."""
    for name in ("cancel_all_and_flush", "stop", "close"):
        try:
            getattr(camera, name)()
        except Exception as exc:
            log.warning("Pi camera: %s failed while closing: %r", name, exc)


class LentBuffer:
    """A completed request whose lores buffer is mapped as an array until `release()`."""

    def __init__(self, request: RequestLike) -> None:
        self._request: RequestLike | None = request
        self._mapped: MappedArrayLike | None = None
        self._lock = threading.Lock()  # the decode thread and the handoff may both release

    def map(self, map_array: MapArray) -> np.ndarray:
        assert self._request is not None
        mapped = map_array(self._request, "lores")
        array = mapped.__enter__().array
        self._mapped = mapped
        if array is None:
            raise CameraError("the Pi camera's lores buffer could not be mapped")
        return array

    def release(self) -> None:
        """Unmap the buffer and hand the request back to the camera; later calls do nothing.

        The frame must no longer be referenced: older picamera2 closes the mmap here, which
        fails while a view of it lives (the request is handed back all the same)."""
        with self._lock:
            mapped, self._mapped = self._mapped, None
            request, self._request = self._request, None
        # Whatever picamera2 raises here (a camera stopped meanwhile) must not stop the loop.
        if mapped is not None:
            try:
                mapped.__exit__(None, None, None)
            except Exception as exc:
                log.warning("Pi camera: unmapping a frame failed: %r", exc)
        if request is not None:
            try:
                request.release()
            except Exception as exc:
                log.warning("Pi camera: handing a frame back failed: %r", exc)


def start_lores_stream(
    camera: CameraLike,
    size: tuple[int, int],
    lores_size: tuple[int, int],
    fps: float,
    focus: Focus = "auto",
) -> tuple[int, int, float]:
    """Configure and start a lores YUV420 stream; return its size as the camera settled it and
    the frame rate the camera will run at."""
    if lores_size[0] > size[0] or lores_size[1] > size[1]:
        raise ValueError(f"the lores size {lores_size} is larger than the frame size {size}")
    config = camera.create_video_configuration(
        # main is not read, but must be at least as large as lores; YUV420 is its cheapest format.
        main={"size": size, "format": "YUV420"},
        lores={"size": lores_size, "format": "YUV420"},
        # Set with the configuration, so they hold from the first frame.
        controls={"FrameRate": fps} | focus_controls(focus, camera.camera_controls),
        buffer_count=BUFFER_COUNT,
        queue=False,
    )
    camera.configure(config)
    frame_rate = check_frame_rate(camera, fps)
    if frame_rate != fps:
        camera.configure(config)  # reading the sensor modes configured the camera in each
    settled = camera.camera_configuration()
    report_buffers(settled)
    settled_width, settled_height = settled["lores"]["size"]
    camera.start()
    return int(settled_width), int(settled_height), frame_rate


def y_plane(array: np.ndarray, width: int, height: int) -> Frame:
    """The grey image inside a (height * 3 / 2, stride) YUV420 array, as a view."""
    if array.ndim != 2 or array.shape[0] < height or array.shape[1] < width:
        raise CameraError(
            f"the Pi camera gave a {array.shape} array, not YUV420 for {width}x{height}"
        )
    return array[:height, :width]
