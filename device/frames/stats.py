"""What the frame loop reports in telemetry: frame rate, decode time, frames dropped or skipped,
and the read rate: frames where a code was read against frames where one was likely.

Only a decoder that can tell where a code was likely (the ensemble: `SaysWhatItSaw`) counts
the read rate; with any other both counts stay None, never a rate that looks like 100 %.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_SAMPLES = 10_000  # per interval (5.5 minutes at 30 fps); past it, the first ones stand for all


@dataclass(frozen=True)
class StatsSnapshot:
    fps: float  # frames per second the loop took from the camera (decoded or unchanged)
    decode_ms: float  # median decode time
    dropped: int  # frames the camera delivered that were never taken (a newer one came first)
    unchanged: int  # frames taken but not decoded: the scene had not changed (SceneWatch)
    decoded_fps: float  # frames decoded per second
    age_p99_ms: float  # how old frames were when the decode thread took them (99th percentile)
    # Decoded frames where a code was likely (read, found but unread, or a dense-edge region),
    # and those where one was read; None when the decoder cannot tell.
    frames_with_code: int | None = None
    frames_read: int | None = None


@dataclass
class ScanStats:
    """Frame rate, decode time, dropped frames since the last snapshot, for telemetry."""

    clock: Callable[[], float] = time.monotonic
    frames: int = 0  # decoded
    decode_seconds: list[float] = field(default_factory=list)
    age_seconds: list[float] = field(default_factory=list)
    scans: int = 0
    dropped: int = 0
    dropped_total: int = 0
    unchanged: int = 0
    unchanged_total: int = 0
    with_code: int = 0
    read: int = 0
    _counts_codes: bool = field(default=False, init=False)
    _since: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._since = self.clock()

    def add_frame(self, decode_seconds: float) -> None:
        self.frames += 1
        if len(self.decode_seconds) < MAX_SAMPLES:
            self.decode_seconds.append(decode_seconds)

    def add_code_frame(self, *, likely: bool, read: bool) -> None:
        """One decoded frame, from a decoder that tells where a code was likely; a frame read
        counts as likely whatever the decoder says."""
        self._counts_codes = True
        if likely or read:
            self.with_code += 1
            if read:
                self.read += 1

    def add_taken(self, age_seconds: float) -> None:
        if len(self.age_seconds) < MAX_SAMPLES:
            self.age_seconds.append(age_seconds)

    def add_dropped(self, frames: int) -> None:
        self.dropped += frames
        self.dropped_total += frames

    def add_unchanged(self) -> None:
        self.unchanged += 1
        self.unchanged_total += 1

    def snapshot(self) -> StatsSnapshot:
        """The figures since the last snapshot; then start afresh."""
        now = self.clock()
        elapsed = max(now - self._since, 1e-9)
        decode_ms = statistics.median(self.decode_seconds) * 1000 if self.decode_seconds else 0.0
        ages = sorted(self.age_seconds)
        age_p99_ms = ages[min(len(ages) - 1, int(len(ages) * 0.99))] * 1000 if ages else 0.0
        taken = StatsSnapshot(
            fps=(self.frames + self.unchanged) / elapsed,
            decode_ms=decode_ms,
            dropped=self.dropped,
            unchanged=self.unchanged,
            decoded_fps=self.frames / elapsed,
            age_p99_ms=age_p99_ms,
            frames_with_code=self.with_code if self._counts_codes else None,
            frames_read=self.read if self._counts_codes else None,
        )
        self.frames, self.decode_seconds, self.age_seconds, self._since = 0, [], [], now
        self.dropped = self.unchanged = self.with_code = self.read = 0
        return taken
