"""A stand-in for picamera2.Picamera2 that mirrors the calls our adapter makes, and only those.

It keeps picamera2's shapes: create_video_configuration returns a dict with the same keys and
stream defaults, configure checks the lores stream as picamera2 does and fills in each stream's
stride, and capture_array("lores") returns a fresh (height * 3 / 2, stride) YUV420 array whose rows
are padded past the image width, as on a Pi 4. Every call is recorded in `calls`.
"""

from __future__ import annotations

from collections.abc import Mapping
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

    def capture_array(self, name: str = "main", wait: float | None = None) -> np.ndarray:
        self.calls.append(("capture_array", {"name": name, "wait": wait}))
        if self.fail_with is not None:
            raise self.fail_with
        if not self.started or self.camera_config is None:
            raise RuntimeError("Camera is not running")
        stream = self.camera_config[name]
        (width, height), stride = stream["size"], stream["stride"]
        array = np.full((height * 3 // 2, stride), CHROMA_BYTE, dtype=np.uint8)
        array[:height, :] = PADDING_BYTE
        array[:height, :width] = luma(width, height, len(self.captured))
        self.captured.append(array)
        return array

    def stop(self) -> None:
        self.calls.append(("stop", None))
        self.started = False

    def close(self) -> None:
        self.calls.append(("close", None))
        self.closed = True

    def call_names(self) -> list[str]:
        return [name for name, _ in self.calls]
