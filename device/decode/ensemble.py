"""The ensemble: the cheap pass on every frame, more work only where a code is likely.

Escalation rule, per frame:

1. Cheap pass: zxing-cpp over the whole frame at its own size, smoothed first (3x3 Gaussian)
   when the sensor noise is above `NOISY` grey levels (noise makes zxing both slower and worse).
   Codes read: done.
2. Is a code likely? Yes where zxing found a symbol but could not decode it (its outline), and
   where the frame has a patch dense with strong edges in both directions
   (`likely_code_regions`); at most two regions. None: done, nothing read. So an empty frame
   costs the cheap pass plus about half a millisecond.
3. Rescue: try the steps of `RESCUE_STEPS` in order (sharpening, enlarging, the other smoothing,
   a global threshold, the quiet zone restored at the frame edge, zbar, contrast equalisation)
   on crops of those regions, and stop at the first step that reads a code. The work is bounded:
   at most `max_steps` steps (one step = one filter and one library pass on one region), and no
   step starts once `time_budget` seconds have gone, so a hard frame never stalls the gate; the
   next frame gets its own chance.

`EnsembleDecoder.last` tells what the last frame cost (the steps tried, the step that read it):
benchmarks and tests count steps rather than time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from device.decode import preprocess
from device.decode.base import DecodedCode, Frame, grey_pixels, unique
from device.decode.preprocess import Region, denoise, likely_code_regions, noise_level
from device.decode.zbar import PyzbarDecoder
from device.decode.zxing import ZxingDecoder

# Noise (grey levels) above which the cheap pass smooths the frame first: measured on 1280x720
# frames, zxing's cost jumps from 0.4 to 3-4 ms between noise 2 and 4, and smoothing then also
# reads more small codes. Clean images (scans, screenshots) keep every pixel's detail.
NOISY = 3.0
MAX_REGIONS = 2
MAX_STEPS = 8
TIME_BUDGET = 0.020  # seconds of rescue work per frame; the step running when it ends finishes
ENLARGE_UP_TO_PIXELS = 1280 * 720 // 4


@dataclass(frozen=True)
class Crop:
    """A likely region of the frame, as it is and as the cheap pass saw it."""

    pixels: Frame  # the frame's own pixels
    noisy: bool  # the cheap pass smoothed the frame
    frame_edges: tuple[bool, bool, bool, bool] = (False, False, False, False)  # top bottom l r

    @cached_property
    def smoothed(self) -> Frame:
        """The crop as the cheap pass saw it (smoothed once, for every step that uses it)."""
        return denoise(self.pixels) if self.noisy else self.pixels


def _always(crop: Crop) -> bool:
    return True


@dataclass(frozen=True)
class RescueStep:
    """One way to read a crop the cheap pass missed: a filter, then one library pass."""

    name: str
    prepare: Callable[[Crop], Frame]
    library: Literal["zxing", "zbar"] = "zxing"
    global_threshold: bool = False  # zxing's GlobalHistogram binarizer instead of LocalAverage
    applies: Callable[[Crop], bool] = _always


def _other_smoothing(crop: Crop) -> Frame:
    """The crop as the cheap pass did not see it: raw if that pass smoothed, else smoothed."""
    return crop.pixels if crop.noisy else denoise(crop.pixels)


def _at_frame_edge(crop: Crop) -> bool:
    return any(crop.frame_edges)


def _small_enough_to_enlarge(crop: Crop) -> bool:
    """Enlarging helps modules of 2-4 pixels, which make codes of a few hundred pixels; a crop
    beyond a quarter of a 1280x720 frame holds a big code, and enlarged would cost like four
    whole frames."""
    return crop.pixels.size <= ENLARGE_UP_TO_PIXELS


# In order of codes rescued per millisecond, measured on the generated hard gate frames and on
# the qr-photos set; the three after the quiet zone rescued nothing there that an earlier step
# missed, and stay as a last resort while the budget lasts.
RESCUE_STEPS: tuple[RescueStep, ...] = (
    RescueStep("zxing sharpened", lambda c: preprocess.sharpen(c.smoothed)),
    RescueStep(
        "zxing sharpened, enlarged x2",
        lambda c: preprocess.upscale(preprocess.sharpen(c.smoothed), 2.0),
        applies=_small_enough_to_enlarge,
    ),
    RescueStep("zxing other smoothing", _other_smoothing),
    RescueStep(
        "zxing global threshold, texture smoothed",
        lambda c: preprocess.smooth_texture(c.pixels),
        global_threshold=True,
    ),
    RescueStep(
        "zxing quiet zone restored at the frame edge",
        lambda c: preprocess.with_quiet_zone(c.smoothed, c.frame_edges),
        applies=_at_frame_edge,
    ),
    RescueStep("zbar", lambda c: c.smoothed, library="zbar"),
    RescueStep("zxing equalised (CLAHE)", lambda c: preprocess.equalise(c.smoothed)),
    RescueStep(
        "zxing enlarged x2",
        lambda c: preprocess.upscale(c.smoothed, 2.0),
        applies=_small_enough_to_enlarge,
    ),
)


@dataclass
class Escalation:
    """What the ensemble did for the last frame."""

    regions: list[Region] = field(default_factory=list)
    steps_tried: list[str] = field(default_factory=list)
    read_by: str = ""  # "cheap pass", a rescue step's name, or "" when nothing was read
    out_of_budget: bool = False
    undecoded: int = 0  # symbols zxing's cheap pass found but could not decode


class EnsembleDecoder:
    """zxing-cpp on every frame; zbar and image filters only where a code is likely but unread.

    `zbar` None: the zbar steps are left out. `steps`, `max_steps`, `time_budget` and `clock`
    are there for tests and benchmarks; the defaults are what the gate runs.
    """

    name = "ensemble"

    def __init__(
        self,
        zxing: ZxingDecoder,
        zbar: PyzbarDecoder | None = None,
        *,
        steps: Sequence[RescueStep] = RESCUE_STEPS,
        max_steps: int = MAX_STEPS,
        time_budget: float = TIME_BUDGET,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._zxing = zxing
        self._zbar = zbar
        self._steps = [step for step in steps if zbar is not None or step.library != "zbar"]
        self._max_steps = max_steps
        self._time_budget = time_budget
        self._clock = clock
        self._lock = threading.Lock()
        self.last = Escalation()

    @property
    def step_names(self) -> tuple[str, ...]:
        """The rescue steps this decoder tries, in order."""
        return tuple(step.name for step in self._steps)

    def unreadable_in_last(self) -> bool:
        """Whether the last frame held a symbol zxing found but nothing could read."""
        return self.last.undecoded > 0 and not self.last.read_by

    def code_likely_in_last(self) -> bool:
        """Whether the last frame held a code: read (by the cheap pass or a rescue step), or
        likely (a symbol zxing found but could not decode, a region dense with strong edges).
        The frames a read rate counts against."""
        last = self.last
        return bool(last.read_by) or bool(last.regions) or last.undecoded > 0

    def decode(self, frame: Frame) -> list[DecodedCode]:
        grey = grey_pixels(frame)
        if grey is None:
            return []
        with self._lock:
            self.last = Escalation()
            return self._decode(grey)

    def _decode(self, grey: Frame) -> list[DecodedCode]:
        noise = noise_level(grey)
        noisy = noise > NOISY
        # zxing's own downscaled passes are left to the rescue steps (all of which make them).
        attempt = self._zxing.attempt(denoise(grey) if noisy else grey, downscale=False)
        self.last.undecoded = len(attempt.undecoded)
        if attempt.codes:
            self.last.read_by = "cheap pass"
            return attempt.codes
        regions = _distinct(attempt.undecoded + likely_code_regions(grey, noise))[:MAX_REGIONS]
        self.last.regions = regions
        if not regions:
            return []
        crops = [Crop(region.crop(grey), noisy, region.frame_edges(grey)) for region in regions]
        return self._rescue(crops)

    def _rescue(self, crops: list[Crop]) -> list[DecodedCode]:
        deadline = self._clock() + self._time_budget
        for step in self._steps:
            for crop in filter(step.applies, crops):
                if len(self.last.steps_tried) >= self._max_steps or self._clock() >= deadline:
                    self.last.out_of_budget = True
                    return []
                self.last.steps_tried.append(step.name)
                codes = self._run(step, crop)
                if codes:
                    self.last.read_by = step.name
                    return unique(codes)
        return []

    def _run(self, step: RescueStep, crop: Crop) -> list[DecodedCode]:
        pixels = step.prepare(crop)
        if step.library == "zbar":
            return self._zbar.read(pixels) if self._zbar is not None else []
        binarizer = self._zxing.global_binarizer if step.global_threshold else None
        return self._zxing.read(pixels, binarizer)


def _distinct(regions: list[Region]) -> list[Region]:
    """The regions without those mostly inside an earlier one (zxing's outline and the
    edge-density region of one code usually overlap)."""
    kept: list[Region] = []
    for region in regions:
        if all(_overlap(region, other) < 0.6 * region.width * region.height for other in kept):
            kept.append(region)
    return kept


def _overlap(a: Region, b: Region) -> int:
    width = min(a.left + a.width, b.left + b.width) - max(a.left, b.left)
    height = min(a.top + a.height, b.top + b.height) - max(a.top, b.top)
    return max(0, width) * max(0, height)
