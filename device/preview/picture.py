"""The picture a preview shows: the frame downscaled, the region of interest drawn, the codes
read boxed (never their content: it may be an ID number), encoded as a JPEG under a byte budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from device.frames.framing import Region, region_slices

PREVIEW_WIDTH = 640
JPEG_BUDGET = 48 * 1024  # bytes: a frame, with its header, stays far inside a 64 KiB packet
QUALITIES = (80, 70, 60, 50, 40, 30, 20)
ROI_COLOUR = (0, 215, 255)  # BGR: amber
CODE_COLOUR = (0, 200, 0)  # BGR: green

Grey = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Picture:
    jpeg: bytes
    width: int
    height: int
    roi: tuple[int, int, int, int]  # x, y, width, height in the picture's pixels
    quality: int
    boxes: int  # code outlines drawn


def roi_of(frame: Grey, region: Region | None) -> Grey:
    """The region of interest of a frame, as the scanner cuts it (a view)."""
    if region is None:
        return frame
    return frame[region_slices(region, frame.shape[0], frame.shape[1])]


def make_picture(
    frame: Grey,
    region: Region | None,
    *,
    codes: int,
    width: int = PREVIEW_WIDTH,
    budget: int = JPEG_BUDGET,
) -> Picture:
    """The annotated JPEG of a grey frame; codes > 0 asks for the codes' outlines to be found
    and drawn (the decoders say what they read, not where)."""
    full_width = frame.shape[1]
    scale = min(1.0, width / full_width)
    while True:
        small = _resized(frame, scale)
        picture = _annotated(small, frame.shape, region, codes)
        image, roi, boxes = picture
        for quality in QUALITIES:
            ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise RuntimeError("OpenCV could not encode the preview")
            if len(encoded) <= budget:
                return Picture(
                    encoded.tobytes(), image.shape[1], image.shape[0], roi, quality, boxes
                )
        scale *= 0.75  # even the lowest quality is too large: fewer pixels
        if small.shape[1] < 64:
            raise RuntimeError(f"no preview fits {budget} bytes")


def _resized(frame: Grey, scale: float) -> Grey:
    if scale >= 1.0:
        return frame
    size = (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale)))
    return np.asarray(cv2.resize(frame, size, interpolation=cv2.INTER_AREA), np.uint8)


def _annotated(
    small: Grey, full_shape: tuple[int, ...], region: Region | None, codes: int
) -> tuple[npt.NDArray[np.uint8], tuple[int, int, int, int], int]:
    image = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
    height, width = small.shape[:2]
    if region is None:
        roi = (0, 0, width, height)
    else:
        rows, columns = region_slices(region, height, width)
        roi = (columns.start, rows.start, columns.stop - columns.start, rows.stop - rows.start)
    x, y, w, h = roi
    thickness = max(1, width // 320)
    cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), ROI_COLOUR, thickness)
    boxes = 0
    if codes > 0:
        for quad in code_outlines(small):
            points = np.round(quad).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(image, [points], True, CODE_COLOUR, thickness + 1)
            boxes += 1
    return np.asarray(image, np.uint8), roi, boxes


def code_outlines(grey: Grey) -> list[npt.NDArray[np.float32]]:
    """Where QR codes are in a picture (their four corners each), by OpenCV's detector."""
    detector = cv2.QRCodeDetector()
    try:
        found, points = detector.detectMulti(grey)
        if found and points is not None:
            return [np.asarray(quad, np.float32).reshape(4, 2) for quad in points]
        found, single = detector.detect(grey)  # detectMulti misses a lone small code
    except cv2.error:
        return []
    if not found or single is None:
        return []
    return [np.asarray(single, np.float32).reshape(4, 2)]
