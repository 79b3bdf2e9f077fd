"""Image work for the ensemble: cheap tests on the whole frame, rescue filters on small crops.

Two kinds of function live here. The frame-wide ones run on every frame that the cheap decode
did not read, so each costs a fraction of a millisecond at 1280x720: `noise_level` (how much
sensor noise there is, which decides whether to smooth before decoding) and `likely_code_regions`
(where a code probably is). The rescue filters (`upscale`, `sharpen`, `equalise`, ...) run only
on the crops those regions give, where they cost little because the crops are small.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from device.decode.base import Frame

_SQUARE_3 = np.ones((3, 3), np.uint8)
_SQUARE_5 = np.ones((5, 5), np.uint8)
_CELL = 8  # the code-likelihood map has one cell per 8x8 frame pixels
_HALF_CELL = _CELL // 2  # the same cell at half size
# A QR code is at least 21 modules plus its quiet zone; at 2.5 pixels per module that is about
# 60 pixels, so its dense part covers at least about 5x5 cells.
_MIN_REGION_CELLS = 20
_QUIET_PX = 32  # light margin added where a crop meets the frame edge


@dataclass(frozen=True)
class Region:
    """A rectangle of the frame (pixels) that probably holds a code, with room around it."""

    left: int
    top: int
    width: int
    height: int

    def crop(self, grey: Frame) -> Frame:
        return grey[self.top : self.top + self.height, self.left : self.left + self.width]

    def frame_edges(self, grey: Frame) -> tuple[bool, bool, bool, bool]:
        """Which sides (top, bottom, left, right) of the region lie on the frame's border."""
        height, width = grey.shape
        return (
            self.top == 0,
            self.top + self.height >= height,
            self.left == 0,
            self.left + self.width >= width,
        )


def with_quiet_zone(pixels: Frame, edges: tuple[bool, bool, bool, bool]) -> Frame:
    """`pixels` with a light margin added on the given sides (top, bottom, left, right).

    A code held at the edge of the view loses its quiet zone to the frame border, and zxing's
    detector then misses finder patterns that it finds with a few light pixels beyond them.
    """
    if not any(edges) or min(pixels.shape) < 2:
        return pixels
    light = int(np.percentile(pixels[::4, ::4], 95))
    top, bottom, left, right = (_QUIET_PX if edge else 0 for edge in edges)
    return _frame(
        cv2.copyMakeBorder(pixels, top, bottom, left, right, cv2.BORDER_CONSTANT, value=light)
    )


def noise_level(grey: Frame) -> float:
    """The sensor noise's standard deviation in grey levels, from every eighth row.

    The median absolute difference of horizontal neighbours is about 0.95 sigma for Gaussian
    noise, and edges (a minority of pixels) barely move a median. A frame filled by a code of
    one-pixel modules reads as noisy: the decoder's rescue path covers that case.
    """
    rows = grey[::8]
    if rows.shape[1] < 2:
        return 0.0
    steps = cv2.absdiff(rows[:, 1:], rows[:, :-1])
    histogram = cv2.calcHist([steps], [0], None, [256], [0, 256]).ravel()
    cumulative = np.cumsum(histogram)
    return float(np.searchsorted(cumulative, cumulative[-1] / 2))


def denoise(grey: Frame) -> Frame:
    """A 3x3 Gaussian: removes most sensor noise and keeps modules of 2.5 pixels apart."""
    return _frame(cv2.GaussianBlur(grey, (3, 3), 0))


def likely_code_regions(grey: Frame, noise: float, limit: int = 2) -> list[Region]:
    """Up to `limit` regions dense with strong edges in both directions, largest first.

    A code is a patch where nearly every pixel is on an edge between dark and light modules,
    across and along (whatever its rotation); walls, doors, shelves and faces have edges along
    lines, mostly in one direction at a time. The map is built at half size (which also halves
    the noise): the mean step between horizontal neighbours and between vertical neighbours per
    8x8-pixel cell, the smaller of the two thresholded above what the noise alone gives, then
    opened so that thin lines drop out. Regions get a margin of a quarter of their size, since
    the densest part of a blurred code is smaller than the code.
    """
    height, width = grey.shape
    if height < 4 * _CELL or width < 4 * _CELL:
        return [Region(0, 0, width, height)]
    half = half_size(grey)
    # Whole cells only: an integer shrink factor keeps INTER_AREA on its fast path.
    columns, rows = (width // 2 - 1) // _HALF_CELL, (height // 2 - 1) // _HALF_CELL
    cut_w, cut_h = columns * _HALF_CELL, rows * _HALF_CELL
    across_steps = cv2.absdiff(half[:cut_h, 1 : cut_w + 1], half[:cut_h, :cut_w])
    along_steps = cv2.absdiff(half[1 : cut_h + 1, :cut_w], half[:cut_h, :cut_w])
    across = cv2.resize(across_steps, (columns, rows), interpolation=cv2.INTER_AREA)
    along = cv2.resize(along_steps, (columns, rows), interpolation=cv2.INTER_AREA)
    # Noise alone gives a mean step of about 0.56 sigma at half size.
    dense = (cv2.min(across, along) > 2.0 + 0.6 * noise).astype(np.uint8)
    areas = cv2.morphologyEx(dense, cv2.MORPH_OPEN, _SQUARE_3)
    joined = cv2.dilate(areas, _SQUARE_5)  # join the pieces of one code split by glare
    count, _, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    found = [
        stats[index]
        for index in range(1, count)
        if stats[index][cv2.CC_STAT_AREA] >= _MIN_REGION_CELLS
    ]
    found.sort(key=lambda row: -int(row[cv2.CC_STAT_AREA]))
    return [_with_margin(row, width, height) for row in found[:limit]]


def _with_margin(stats: np.ndarray, width: int, height: int) -> Region:
    x, y, w, h = (int(value) * _CELL for value in stats[:4])
    margin = max(w, h) // 4 + _CELL
    left, top = max(0, x - margin), max(0, y - margin)
    right, bottom = min(width, x + w + margin), min(height, y + h + margin)
    return Region(left, top, right - left, bottom - top)


def upscale(grey: Frame, factor: float) -> Frame:
    """Bicubic enlargement: gives the decoder's sampling grid more than 2-3 pixels per module."""
    return _frame(cv2.resize(grey, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC))


def sharpen(grey: Frame) -> Frame:
    """Unsharp mask: steepens module edges that defocus or motion blur has spread."""
    blurred = cv2.GaussianBlur(grey, (0, 0), 1.5)
    return _frame(cv2.addWeighted(grey, 2.0, blurred, -1.0, 0))


def equalise(grey: Frame) -> Frame:
    """Local histogram equalisation (CLAHE): lifts a low-contrast or glare-washed code."""
    return _frame(cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(grey))


def smooth_texture(grey: Frame) -> Frame:
    """A 5x5 Gaussian: flattens texture inside modules (a code printed over a photo, dirt)."""
    return _frame(cv2.GaussianBlur(grey, (5, 5), 0))


def half_size(grey: Frame) -> Frame:
    """Half the width and height, each output pixel the mean of four (this also halves noise)."""
    height, width = grey.shape
    return _frame(cv2.resize(grey, (width // 2, height // 2), interpolation=cv2.INTER_AREA))


def _frame(image: object) -> Frame:
    """OpenCV's result as the uint8 array it is (no copy): its stubs type results loosely."""
    return np.asarray(image, dtype=np.uint8)
