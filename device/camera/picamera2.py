"""The Raspberry Pi camera through picamera2, as grey frames with no copy.

picamera2 comes from Raspberry Pi OS (apt) and imports libcamera when imported, so it is imported
here only, inside `Picamera2Source`, and only when no `camera_factory` is given.

The camera runs a lores YUV420 stream of the asked size. A YUV420 array from picamera2 is
(height * 3 / 2, stride): `height` rows of Y (luma, the grey image we want), then the U and V
rows. The stride can be wider than the image (on a Pi 4 the lores rows are padded for the ISP), so
the frame is the view `array[:height, :width]`: no copy, no colour conversion.

Stale frames: by default picamera2 holds the last completed frame and hands it to the next
capture, so a read can return a frame exposed before the call. We configure `queue=False`: every
read waits for a frame that completes after it was called. That costs half a frame on average
(17 ms at 30 fps) and guarantees that the frame after a verdict is not one taken before it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from device.camera import CameraError, ClosingSource, Frame

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "picamera2 comes from Raspberry Pi OS: sudo apt install python3-picamera2 "
    "(and create the venv with --system-site-packages)"
)
# We hold no camera buffer (capture_array copies it out), so 4 keep the ISP busy; picamera2's
# video default of 6 only costs CMA memory here.
BUFFER_COUNT = 4
READ_TIMEOUT = 2.0  # seconds without a frame before a read fails: a cable came loose


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
        camera_factory: Callable[[], CameraLike] | None = None,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        factory = camera_factory if camera_factory is not None else import_picamera2()
        try:
            camera = factory()
        except Exception as exc:
            raise CameraError(f"cannot open the Pi camera: {exc}") from exc
        self._camera: CameraLike | None = camera
        self._read_timeout = read_timeout
        try:
            self.width, self.height = start_lores_stream(camera, width, height, fps)
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


def import_picamera2() -> Callable[[], CameraLike]:
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        raise CameraError(INSTALL_HINT) from exc
    return Picamera2


def start_lores_stream(camera: CameraLike, width: int, height: int, fps: float) -> tuple[int, int]:
    """Configure and start a lores YUV420 stream; return its size as the camera settled it."""
    size = (width, height)
    config = camera.create_video_configuration(
        # main is not read, but must be at least as large as lores; YUV420 is its cheapest format.
        main={"size": size, "format": "YUV420"},
        lores={"size": size, "format": "YUV420"},
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
