"""A stand-in for picamera2.Picamera2 that mirrors the calls our adapter makes, and only those.

It keeps picamera2's shapes: create_video_configuration returns a dict with the same keys and
stream defaults, configure checks the lores stream as picamera2 does and fills in each stream's
stride, and capture_array("lores") returns a fresh (height * 3 / 2, stride) YUV420 array whose rows
are padded past the image width, as on a Pi 4 (picamera2 copies the buffer out there). Every call
is recorded in `calls`.

capture_request() mirrors the camera's buffers: `buffer_count` of them per stream, each a memory
file descriptor (as a DMA buffer is a dmabuf fd), filled by the "ISP" only while free. A request
holds its buffers until `release()`, which hands them back to be filled again (so a frame used
after its release shows a later frame's pixels); with none free, capture_request times out as a
camera with no buffer to fill does. `FakeMappedArray` stands in for picamera2.MappedArray: it
mmaps the buffer's fd on enter and closes the mapping on exit, which fails (BufferError, counted
in `unmap_failures`) while a view of it lives, as picamera2's mmap does.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import numpy as np

STRIDE_ALIGN = 64  # bytes; the ISP pads rows to this
PADDING_BYTE = 0xEE  # what lies right of the image in each row: must never reach a frame
CHROMA_BYTE = 0x80  # neutral U and V


def padded_stride(width: int) -> int:
    return -(-width // STRIDE_ALIGN) * STRIDE_ALIGN


def luma(width: int, height: int, frame_number: int) -> np.ndarray:
    """The Y plane of frame `frame_number`: a gradient shifted by the frame number."""
    rows = np.arange(height, dtype=np.int64)[:, None]
    cols = np.arange(width, dtype=np.int64)[None, :]
    return ((rows + cols + frame_number) % 200).astype(np.uint8)


class FakePicamera2:
    def __init__(self, *, sensor_size: tuple[int, int] = (2304, 1296)) -> None:
        self.sensor_size = sensor_size
        self.calls: list[tuple[str, Any]] = []
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self.closed = False
        self.captured: list[np.ndarray] = []
        self.fail_with: BaseException | None = None
        """Raised by every later capture_array: the camera was unplugged."""
        self.frame_number = 0
        self.free_buffers: list[dict[str, FakeDmaBuffer]] = []
        self.held: list[FakeCompletedRequest] = []
        self.most_held = 0
        self.mappings: list[FakeMappedArray] = []
        self.unmap_failures = 0
        self._buffers_lock = threading.Lock()  # captured in one thread, released in another

    def unplug(self, error: BaseException | None = None) -> None:
        self.fail_with = error or TimeoutError("no frame from the camera")

    def create_video_configuration(
        self,
        main: Mapping[str, Any] | None = None,
        lores: Mapping[str, Any] | None = None,
        raw: Mapping[str, Any] | None = None,
        buffer_count: int = 6,
        controls: Mapping[str, Any] | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
    ) -> dict[str, Any]:
        self.calls.append(
            ("create_video_configuration", {"main": main, "lores": lores, "controls": controls})
        )
        main_stream = {"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True}
        main_stream |= dict(main or {})
        lores_stream = None
        if lores is not None:
            lores_stream = {"format": "YUV420", "size": main_stream["size"], "preserve_ar": False}
            lores_stream |= dict(lores)
        return {
            "use_case": "video",
            "transform": None,
            "colour_space": None,
            "buffer_count": buffer_count,
            "queue": queue,
            "main": main_stream,
            "lores": lores_stream,
            "raw": {"format": "SBGGR10_CSI2P", "size": main_stream["size"]} | dict(raw or {}),
            "controls": dict(controls or {}),
            "sensor": {},
            "display": display,
            "encode": encode,
        }

    def configure(self, camera_config: dict[str, Any]) -> None:
        self.calls.append(("configure", camera_config))
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        config = dict(camera_config)  # picamera2 copies the top level, updates the streams
        lores = config["lores"]
        if lores is not None:
            if lores["format"] not in ("YUV420", "YVU420"):
                raise RuntimeError("lores stream must be YUV")
            (main_w, main_h), (lores_w, lores_h) = config["main"]["size"], lores["size"]
            if lores_w > main_w or lores_h > main_h:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
        for name in ("main", "lores"):
            stream = config[name]
            if stream is not None:
                width, height = stream["size"]
                stream["stride"] = padded_stride(width)
                stream["framesize"] = stream["stride"] * height * 3 // 2
        self.camera_config = config

    def camera_configuration(self) -> dict[str, Any]:
        self.calls.append(("camera_configuration", None))
        assert self.camera_config is not None, "configure first"
        return self.camera_config

    def start(self) -> None:
        self.calls.append(("start", None))
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True
        streams = {
            name: stream["framesize"]
            for name in ("main", "lores")
            if (stream := self.camera_config[name]) is not None
        }
        self.free_buffers = [
            {name: FakeDmaBuffer(size) for name, size in streams.items()}
            for _ in range(self.camera_config["buffer_count"])
        ]

    def capture_array(self, name: str = "main", wait: float | None = None) -> np.ndarray:
        self.calls.append(("capture_array", {"name": name, "wait": wait}))
        if self.fail_with is not None:
            raise self.fail_with
        if not self.started or self.camera_config is None:
            raise RuntimeError("Camera is not running")
        array = np.empty(yuv420_shape(self.camera_config[name]), dtype=np.uint8)
        self._expose(self.camera_config[name], array)
        self.frame_number += 1
        self.captured.append(array)
        return array

    def capture_request(
        self, wait: float | None = None, flush: bool | None = None
    ) -> FakeCompletedRequest:
        self.calls.append(("capture_request", {"wait": wait}))
        if self.fail_with is not None:
            raise self.fail_with
        if not self.started or self.camera_config is None:
            raise RuntimeError("Camera is not running")
        with self._buffers_lock:
            if not self.free_buffers:
                raise TimeoutError("no frame completed: every buffer is held by a request")
            buffers = self.free_buffers.pop(0)
        for name, buffer in buffers.items():
            stream = self.camera_config[name]
            self._expose(stream, buffer.isp_view.reshape(yuv420_shape(stream)))
        self.frame_number += 1
        request = FakeCompletedRequest(self, buffers, dict(self.camera_config))
        with self._buffers_lock:
            self.held.append(request)
            self.most_held = max(self.most_held, len(self.held))
        return request

    def _expose(self, stream: Mapping[str, Any], array: np.ndarray) -> None:
        """Write the next frame into a YUV420 array: luma, padding right of it, neutral chroma."""
        (width, height) = stream["size"]
        array[:, :] = CHROMA_BYTE
        array[:height, :] = PADDING_BYTE
        array[:height, :width] = luma(width, height, self.frame_number)

    def _give_back(self, request: FakeCompletedRequest) -> None:
        with self._buffers_lock:
            self.held.remove(request)
            self.free_buffers.append(request.buffers)

    def stop(self) -> None:
        self.calls.append(("stop", None))
        self.started = False

    def close(self) -> None:
        self.calls.append(("close", None))
        self.closed = True

    def call_names(self) -> list[str]:
        return [name for name, _ in self.calls]


def yuv420_shape(stream: Mapping[str, Any]) -> tuple[int, int]:
    return stream["size"][1] * 3 // 2, stream["stride"]


class FakeDmaBuffer:
    """A buffer the camera writes into: a memory file, mapped once for the "ISP"."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.fd = os.memfd_create("fake-dmabuf")
        os.ftruncate(self.fd, size)
        self.isp_view = np.frombuffer(mmap.mmap(self.fd, size), dtype=np.uint8)


class FakeCompletedRequest:
    """A completed request: the buffers of every stream, held until `release()`."""

    def __init__(
        self, camera: FakePicamera2, buffers: dict[str, FakeDmaBuffer], config: dict[str, Any]
    ) -> None:
        self.camera = camera
        self.buffers = buffers
        self.config = config
        self.released = False

    def release(self) -> None:
        if self.released:
            raise RuntimeError("CompletedRequest: lock now has negative ref_count")
        self.released = True
        self.camera._give_back(self)


class FakeMappedArray:
    """picamera2.MappedArray(request, stream): the stream's buffer as an array, no copy."""

    def __init__(
        self, request: FakeCompletedRequest, stream: str, reshape: bool = True, write: bool = True
    ) -> None:
        self._request = request
        self._stream = stream
        self._map: mmap.mmap | None = None
        self._array: np.ndarray | None = None

    def __enter__(self) -> FakeMappedArray:
        buffer = self._request.buffers[self._stream]
        self._map = mmap.mmap(buffer.fd, buffer.size)
        shape = yuv420_shape(self._request.config[self._stream])
        self._array = np.asarray(self._map).reshape(shape)  # holds the mapping while it lives
        self._request.camera.mappings.append(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._array = None
        assert self._map is not None
        try:
            self._map.close()
        except BufferError:
            self._request.camera.unmap_failures += 1
            raise

    @property
    def array(self) -> np.ndarray | None:
        return self._array
