"""What part of each frame is decoded, and at what scale: the region is a numpy view of the frame
(no copy); a scale below 1 resizes the region (INTER_AREA) before decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from device.camera.source import Frame

Region = tuple[float, float, float, float]  # x, y, width, height as fractions of the frame


@dataclass(frozen=True)
class Framing:
    """What part of each frame is decoded, and at what scale.

    `region`: (x, y, width, height) as fractions of the frame (0..1), None for the whole frame;
    cut as a numpy view, so it costs nothing. `scale` below 1 shrinks the region before decoding:
    fewer pixels to search, for codes large enough to stay readable (about 3 pixels per module).
    """

    region: Region | None = None
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.scale <= 1:
            raise ValueError(f"the decode scale must be in (0, 1], not {self.scale}")
        if self.region is not None:
            x, y, width, height = self.region
            if min(x, y) < 0 or width <= 0 or height <= 0 or x + width > 1 or y + height > 1:
                raise ValueError(f"the region {self.region} is not inside the frame (0..1)")

    def apply(self, frame: Frame) -> Frame:
        """The part of `frame` to decode: a view when only a region is cut."""
        return self.shrink(self.cut(frame))

    def cut(self, frame: Frame) -> Frame:
        """The region of `frame`, as a view (the frame itself without a region)."""
        if self.region is None:
            return frame
        return frame[region_slices(self.region, frame.shape[0], frame.shape[1])]

    def shrink(self, region: Frame) -> Frame:
        """`region` at the decode scale (itself at scale 1)."""
        if self.scale >= 1:
            return region
        height, width = region.shape[:2]
        size = (max(1, round(width * self.scale)), max(1, round(height * self.scale)))
        return np.asarray(cv2.resize(region, size, interpolation=cv2.INTER_AREA), np.uint8)


def region_slices(region: Region, height: int, width: int) -> tuple[slice, slice]:
    """(rows, columns) of `region` in a frame of this size; never empty."""
    x, y, w, h = region
    left, top = min(int(x * width), width - 1), min(int(y * height), height - 1)
    right = max(left + 1, min(width, round((x + w) * width)))
    bottom = max(top + 1, min(height, round((y + h) * height)))
    return slice(top, bottom), slice(left, right)
