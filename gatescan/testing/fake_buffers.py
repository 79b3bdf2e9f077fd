"""The fake picamera2's frame buffers: DMA buffers as memory files, the requests that hold them,
and MappedArray's stand-in (fake_picamera2.py says how they behave)."""

from __future__ import annotations

import mmap
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Protocol

import numpy as np

STRIDE_ALIGN = 64  # bytes; the ISP pads rows to this
PADDING_BYTE = 0xEE  # what lies right of the image in each row: must never reach a frame
CHROMA_BYTE = 0x80  # neutral U and V


class BufferOwner(Protocol):
    """The camera a request's buffers go back to (FakePicamera2)."""

    mappings: list[FakeMappedArray]
    unmap_failures: int

    def give_back(self, request: FakeCompletedRequest) -> None: ...


def padded_stride(width: int) -> int:
    return -(-width // STRIDE_ALIGN) * STRIDE_ALIGN


def luma(width: int, height: int, frame_number: int) -> np.ndarray:
    """The Y plane of frame `frame_number`: a gradient shifted by the frame number."""
    rows = np.arange(height, dtype=np.int64)[:, None]
    cols = np.arange(width, dtype=np.int64)[None, :]
    return ((rows + cols + frame_number) % 200).astype(np.uint8)


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
        self, camera: BufferOwner, buffers: dict[str, FakeDmaBuffer], config: dict[str, Any]
    ) -> None:
        self.camera = camera
        self.buffers = buffers
        self.config = config
        self.released = False

    def release(self) -> None:
        if self.released:
            raise RuntimeError("CompletedRequest: lock now has negative ref_count")
        self.released = True
        self.camera.give_back(self)


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
