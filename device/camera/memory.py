"""Frames already in memory played as a camera: for benchmarks and tests of the frame pipeline.

A replay folder decodes an image file whenever a new image comes up, which a real camera never
costs its host; this source hands out arrays it was given, in order, paced to `fps` by the same
`FramePacer` as the other file-fed sources, so what a benchmark measures is the pipeline alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from device.camera.source import CameraError, ClosingSource, Frame, FramePacer


class MemorySource(ClosingSource):
    """Hands out `frames` in order at `fps` (unpaced with pace=False); again from the first with
    loop=True, else the last frame for ever."""

    def __init__(
        self,
        frames: Sequence[Frame],
        *,
        fps: float = 30.0,
        loop: bool = True,
        pace: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not frames:
            raise ValueError("a memory source needs at least one frame")
        self.frames = list(frames)
        self.loop = loop
        self.pace = pace
        self.served = 0
        """Frames handed out so far."""
        self._pacer = FramePacer(fps, clock=clock, sleep=sleep)
        self._closed = False

    def read(self) -> Frame:
        if self._closed:
            raise CameraError("the memory source is closed")
        if self.pace:
            self._pacer.wait_for_next_frame()
        count = len(self.frames)
        index = self.served % count if self.loop else min(self.served, count - 1)
        self.served += 1
        return self.frames[index]

    def close(self) -> None:
        self._closed = True
