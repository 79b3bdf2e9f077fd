"""Which frames are worth decoding: a still scene is not decoded 30 times a second.

A gate's camera looks at an empty lane most of the day, and decoding 30 unchanged frames a second
costs a large part of a core for nothing (an empty room at 1280x720 costs a decoder about as much
as a frame with a code). `SceneWatch` reduces each frame's region to a thumbnail of 16x16-pixel
block means (every 8th row: tens of microseconds at 1280x720, and sensor noise averages away) and
compares it with the thumbnail of the last frame decoded. Two modes:

- watching (the scene has been still for `settle_s`): the thumbnail is compared before decoding;
  the frame is decoded only when some blocks moved beyond the noise (a person, a hand, a phone,
  a change of light) or `recheck_s` after the last decode anyway, so a code held perfectly still
  that did not read is tried again several times a second;
- active (something moved within `settle_s`): every frame is decoded at once and compared only
  after its decode and light, so that the comparison never delays a verdict while people are in
  view. A person walking up moves the scene before the code is in view, so a code is normally
  read in this mode; one that appears in a still scene waits for one comparison (well under a
  millisecond).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import cv2
import numpy as np

from device.camera.source import Frame

ROW_STEP = 8  # rows averaged into a block: every 8th (2 rows of 16 pixels per 16x16 block)


class SceneWatch:
    """Says whether a frame shows something new since the last frame that was decoded."""

    def __init__(
        self,
        *,
        block_px: int = 16,
        threshold: int = 12,
        min_blocks: int = 6,
        recheck_s: float = 0.25,
        settle_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`threshold`: grey levels a block's mean must move by; `min_blocks`: how many must move.

        A block's mean over 32 samples moves by about 2 levels under sensor noise of sigma 8;
        a code even 80 pixels wide (2.5 pixels per module) covers some 25 blocks, and the phone
        or card around it many more."""
        self.block_px = block_px
        self.threshold = threshold
        self.min_blocks = min_blocks
        self.recheck_s = recheck_s
        self.settle_s = settle_s
        self._clock = clock
        self._last: np.ndarray | None = None
        self._decoded_at = 0.0
        self._moved_at = float("-inf")
        self._unexamined = False

    @property
    def active(self) -> bool:
        """Something moved within `settle_s`: frames are decoded first, compared after."""
        return self._clock() - self._moved_at < self.settle_s

    def worth_decoding(self, region: Frame) -> bool:
        """Before a decode: False for a still scene whose recheck is not due."""
        now = self._clock()
        if now - self._moved_at < self.settle_s:
            self._unexamined = True
            return True
        thumbnail = self._thumbnail(region)
        moved = self._moved(thumbnail)
        if moved or now - self._decoded_at >= self.recheck_s:
            self._remember(thumbnail, now, moved)
            return True
        return False

    def decoded(self, region: Frame) -> None:
        """After a decode (and its light): compare a frame that was decoded unexamined."""
        if self._unexamined:
            self._unexamined = False
            thumbnail = self._thumbnail(region)
            self._remember(thumbnail, self._clock(), self._moved(thumbnail))

    def _moved(self, thumbnail: np.ndarray) -> bool:
        last = self._last
        if last is None or last.shape != thumbnail.shape:
            return True
        return changed_blocks(last, thumbnail, self.threshold) >= self.min_blocks

    def _remember(self, thumbnail: np.ndarray, now: float, moved: bool) -> None:
        self._last, self._decoded_at = thumbnail, now
        if moved:
            self._moved_at = now

    def _thumbnail(self, region: Frame) -> np.ndarray:
        height, width = region.shape[:2]
        size = (max(1, width // self.block_px), max(1, height // self.block_px))
        rows = region[::ROW_STEP]
        return np.asarray(cv2.resize(rows, size, interpolation=cv2.INTER_AREA), np.int16)


def changed_blocks(before: np.ndarray, after: np.ndarray, threshold: int) -> int:
    return int(np.count_nonzero(np.abs(after - before) > threshold))
