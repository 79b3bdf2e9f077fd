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
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from device.camera.source import CameraError, ClosingSource, Frame, FrameLease

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "picamera2 comes from Raspberry Pi OS: sudo apt install python3-picamera2 "
    "(and create the venv with --system-site-packages)"
)
# Up to three requests are held by the frame pipeline (see above); two more keep the ISP busy.
# picamera2's video default of 6 would only cost CMA memory.
BUFFER_COUNT = 5
READ_TIMEOUT = 2.0  # seconds without a frame before a read fails: a cable came loose


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

    def start(self) -> None: ...

    def capture_array(self, name: str = "main", *, wait: float | None = None) -> np.ndarray: ...

    def capture_request(self, *, wait: float | None = None) -> RequestLike: ...

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
        camera_factory: Callable[[], CameraLike] | None = None,
        map_array: MapArray | None = None,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        """`lores_size`: the size of the frames handed out (default: width x height), at most
        the full size; `map_array` stands in for picamera2.MappedArray (default: imported at the
        first `read_lease`)."""
        factory = camera_factory if camera_factory is not None else import_picamera2()
        self._map_array = map_array
        try:
            camera = factory()
        except Exception as exc:
            raise CameraError(f"cannot open the Pi camera: {exc}") from exc
        self._camera: CameraLike | None = camera
        self._read_timeout = read_timeout
        try:
            self.width, self.height = start_lores_stream(
                camera, (width, height), lores_size or (width, height), fps
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
        camera, self._camera = self._camera, None
        if camera is None:
            return
        # A camera that failed may fail to stop too; shutting down must go on regardless.
        for step in (camera.stop, camera.close):
            try:
                step()
            except Exception as exc:
                log.warning("Pi camera: %s failed while closing: %r", step.__name__, exc)


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


def import_picamera2() -> Callable[[], CameraLike]:
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        raise CameraError(INSTALL_HINT) from exc
    return Picamera2


def import_mapped_array() -> MapArray:
    try:
        from picamera2 import MappedArray
    except ImportError as exc:
        raise CameraError(INSTALL_HINT) from exc
    map_array: MapArray = MappedArray
    return map_array


def start_lores_stream(
    camera: CameraLike, size: tuple[int, int], lores_size: tuple[int, int], fps: float
) -> tuple[int, int]:
    """Configure and start a lores YUV420 stream; return its size as the camera settled it."""
    if lores_size[0] > size[0] or lores_size[1] > size[1]:
        raise ValueError(f"the lores size {lores_size} is larger than the frame size {size}")
    config = camera.create_video_configuration(
        # main is not read, but must be at least as large as lores; YUV420 is its cheapest format.
        main={"size": size, "format": "YUV420"},
        lores={"size": lores_size, "format": "YUV420"},
        controls={"FrameRate": fps},
        buffer_count=BUFFER_COUNT,
        queue=False,
    )
    camera.configure(config)
    settled_width, settled_height = camera.camera_configuration()["lores"]["size"]
    camera.start()
    return int(settled_width), int(settled_height)


def y_plane(array: np.ndarray, width: int, height: int) -> Frame:
    """The grey image inside a (height * 3 / 2, stride) YUV420 array, as a view."""
    if array.ndim != 2 or array.shape[0] < height or array.shape[1] < width:
        raise CameraError(
            f"the Pi camera gave a {array.shape} array, not YUV420 for {width}x{height}"
        )
    return array[:height, :width]
