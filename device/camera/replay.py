"""A folder of images played as a camera: for the demo, the benchmarks and fast tests.

Each image is shown for `hold` seconds at `fps`, that is round(hold * fps) consecutive frames, in
name order. After the last one the source shows an empty mid-grey frame of the same size (a camera
looking at an empty lane), or starts again with `loop=True`. Images are read one at a time when
they come up, so a folder of thousands of photos does not fill the memory of a Pi, and a file
replaced on disk is seen at its next turn: a test can put a code in front of the "camera".

A pass over the folder in which no image could be read is a CameraError (the camera stopped
delivering frames); the read after it tries the files again, so frames return with the files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator
from pathlib import Path

import cv2
import numpy as np

from device.camera.source import CameraError, ClosingSource, Frame, FramePacer

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
EMPTY_GREY = 128  # an empty lane is neither black nor white; mid-grey has no edges to decode


def image_files(folder: Path) -> list[Path]:
    """The images of `folder` in name order; other files are ignored. Raises CameraError."""
    if not folder.is_dir():
        raise CameraError(f"replay folder {folder} does not exist or is not a folder")
    images = sorted(
        (path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda path: path.name,
    )
    if not images:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise CameraError(f"replay folder {folder} has no images ({suffixes})")
    return images


def read_grey(path: Path) -> Frame | None:
    """The image at `path` as a grey frame, or None (logged) when it cannot be decoded."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None or image.size == 0:
        log.warning("replay: skipping %s: not a readable image", path.name)
        return None
    frame = np.asarray(image, dtype=np.uint8)
    frame.flags.writeable = False  # the same array is handed out for many frames
    return frame


class ReplaySource(ClosingSource):
    """Plays the images of `folder` as if a camera saw them one after another."""

    # A recording is decoded frame by frame (the capture thread waits for the decode thread to
    # take each frame), so a replay checks every image even when decoding is slower than `fps`.
    every_frame = True

    def __init__(
        self,
        folder: Path,
        *,
        fps: float = 10.0,
        hold: float = 1.0,
        loop: bool = False,
        pace: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not hold > 0:
            raise ValueError(f"hold must be positive, not {hold!r}")
        self._pacer = FramePacer(fps, clock=clock, sleep=sleep)
        self.paths = image_files(folder)
        self.folder = folder
        self.frames_per_image = max(1, round(hold * fps))
        self.loop = loop
        self.pace = pace
        self.exhausted = False
        """True once every image has been shown (after the first pass when looping)."""
        self._frames = self._play()
        self._closed = False

    def read(self) -> Frame:
        if self._closed:
            raise CameraError(f"replay of {self.folder} is closed")
        if self.pace:
            self._pacer.wait_for_next_frame()
        try:
            return next(self._frames)
        except CameraError:
            # The next read tries the files again: images that come back are shown again.
            self._frames = self._play()
            raise

    def close(self) -> None:
        self._closed = True
        self._frames.close()

    def _play(self) -> Generator[Frame, None, None]:
        last_shape: tuple[int, ...] | None = None
        while True:
            shown_in_pass = False
            for index, path in enumerate(self.paths):
                image = read_grey(path)
                if image is None:
                    continue
                last_shape, shown_in_pass = image.shape, True
                for shown in range(1, self.frames_per_image + 1):
                    if index == len(self.paths) - 1 and shown == self.frames_per_image:
                        self.exhausted = True
                    yield image
            self.exhausted = True  # also when the last files were unreadable
            if not shown_in_pass or last_shape is None:
                # A whole pass without a frame: the camera stopped delivering. Failing here keeps
                # a looping replay of vanished files from spinning for ever inside read().
                raise CameraError(f"replay folder {self.folder} has no readable image")
            if not self.loop:
                break
        empty = np.full(last_shape, EMPTY_GREY, dtype=np.uint8)
        empty.flags.writeable = False
        while True:
            yield empty
