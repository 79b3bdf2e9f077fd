"""Scan-to-light latency of the frame pipeline, against the bare decode time of the same frames.

    python -m bench.latency_bench [--quick] [--showings 200] [--backend auto]

A camera at 30 fps (1280x720 frames in memory, paced like a sensor) looks at an empty lane (one
room from gatescan/testing/gate_frames.py, fresh sensor noise in each frame); every fifth frame a
new code is shown (a cooperative visitor's phone or card, also from gate_frames), so the scene
keeps moving as at a gate with people passing (the scene watch decodes at once, compares after).
Each code is a new showing: cards are granted (green) and visitor codes denied (red) in turn, so
that every showing switches a pin on, a verdict replacing one still lit, exactly as at a gate.

Latency = the moment the pin switched on, as gpiozero's MockFactory recorded it, minus the moment
the frame with the code was handed to the pipeline (the camera's read returned it to the capture
thread, which puts it in the handoff slot). It includes the handoff, a decode of an empty frame
still in progress when the code arrived, the decode, debounce, parsing, policy and the pin write;
the journal write and the uplink nudge come after the light.

Bare decode = the same decoder decoding the same code's frame as the pipeline hands it (its region
at its scale, `Framing.apply`), alone and in the same state as the pipeline's decode of it: in the
decode thread, two frames after the showing, just after that thread has woken for a frame (it had
been idle for about a frame period, as before the code arrived), on an identical copy of the
code's frame that nothing has touched since the same code was shown a round of codes earlier, as
nothing had touched the frame shown. So both decodes start equally cold: a camera's frame is
written by DMA, never in the CPU's caches, and at 30 fps every decode follows an idle wait.
What lies between the two figures is the pipeline's own cost: the handoff, the wake-up of the
decode thread, debounce, parsing, policy and the pin write. Both are taken under the same load,
interleaved. The goal compares the medians; p99 also counts the empty frame the decode thread may
be busy with when the code arrives (up to one decode more).

For context the benchmark also times the same decode warm (decoded again at once, its pixels and
the decoder's code still in the caches): a decode right after another of the same frame is a
good deal faster than any decode a gate makes of a new frame, so it is no baseline for the goal.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

try:
    import bench  # noqa: F401
except ImportError:  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench.figures import Figure, bench_main, percentile
from bench.pipeline_rig import (
    GREEN,
    RED,
    access_policy,
    build_rig,
    distinct_cards,
    empty_lane,
    first_after,
    switched_on,
)
from device.camera.source import Frame, FramePacer
from device.decode.backends import make_decoder
from device.decode.base import DecodedCode, Decoder
from device.frames.framing import Framing
from gatescan.testing.gate_frames import EASY, gate_frame

FPS = 30.0
GAP_FRAMES = 4  # empty frames after each code: a new showing every 5 frames (167 ms)
GOAL_RATIO = 1.1


def readable_code_frames(count: int, decoder: Decoder, seed: int = 21) -> list[tuple[Frame, bytes]]:
    """`count` frames whose codes `decoder` reads, alternating a card and a visitor code."""
    rng = np.random.default_rng(seed)
    cards = iter(distinct_cards(10 * count))
    frames: list[tuple[Frame, bytes]] = []
    attempt = 0
    while len(frames) < count:
        attempt += 1
        payload = next(cards) if len(frames) % 2 == 0 else f"VISITOR-{attempt:06d}".encode()
        frame = gate_frame(payload, EASY, rng).frame
        if [code.data for code in decoder.decode(frame)] == [payload]:
            frames.append((frame, payload))
    return frames


BARE_PHASE = 2  # the frame of a showing's cycle before which its bare decode is timed


class BareTimingDecoder:
    """The pipeline's decoder, which can also time a bare decode in the decode thread.

    `time_before_next(showing, framed)`: before decoding the next frame the pipeline hands it,
    decode `framed` alone, cold then again warm, and record both times for `showing`.
    """

    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder
        self.name = decoder.name
        self.cold_s: dict[int, float] = {}
        self.warm_s: dict[int, float] = {}
        self._due: tuple[int, Frame] | None = None

    def time_before_next(self, showing: int, framed: Frame) -> None:
        self._due = (showing, framed)  # taken by the next decode, a frame period before the next

    def decode(self, frame: Frame) -> list[DecodedCode]:
        due, self._due = self._due, None
        if due is not None:
            showing, framed = due
            self.cold_s[showing] = self._timed(framed)
            self.warm_s[showing] = self._timed(framed)
        return self.decoder.decode(frame)

    def _timed(self, framed: Frame) -> float:
        started = time.perf_counter()
        self.decoder.decode(framed)
        return time.perf_counter() - started


@dataclass
class ShowingCamera:
    """Empty frames with a code every GAP_FRAMES + 1 frames; times the handoffs.

    `bare_copies[i]` is an identical copy of `codes[i]`'s frame, for the bare decode (see the
    module's docstring); `framing` is the pipeline's, so both decode the same pixels."""

    empties: Sequence[Frame]
    codes: Sequence[tuple[Frame, bytes]]
    bare_copies: Sequence[Frame]
    showings: int
    decoder: BareTimingDecoder
    stop: threading.Event
    framing: Framing = field(default_factory=Framing)
    shown_at: list[float] = field(default_factory=list)
    _count: int = 0
    _pacer: FramePacer = field(default_factory=lambda: FramePacer(FPS))

    def read(self) -> Frame:
        showing, phase = divmod(self._count, GAP_FRAMES + 1)
        self._count += 1
        if showing >= self.showings:
            self.stop.set()
        self._pacer.wait_for_next_frame()
        if showing < self.showings:
            if phase == 0:
                self.shown_at.append(time.monotonic())
                return self.codes[showing % len(self.codes)][0]
            if phase == BARE_PHASE:  # the showing was lit about a frame period ago
                copy = self.bare_copies[showing % len(self.bare_copies)]
                self.decoder.time_before_next(showing, self.framing.apply(copy))
        return self.empties[self._count % len(self.empties)]

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Latencies:
    backend: str
    light_ms: list[float]  # one per showing that lit
    bare_ms: list[float]
    warm_ms: list[float]  # the same decode again at once (context)
    missed: int  # showings that never lit
    unpaired: int  # showings that lit but got no bare decode timed (left out of both figures)

    @property
    def ratio_p50(self) -> float:
        return percentile(self.light_ms, 0.5) / percentile(self.bare_ms, 0.5)

    @property
    def ratio_p99(self) -> float:
        return percentile(self.light_ms, 0.99) / percentile(self.bare_ms, 0.99)


def run(showings: int, distinct: int, backend: str, data_dir: Path) -> Latencies:
    decoder = BareTimingDecoder(make_decoder(backend))
    codes = readable_code_frames(distinct, decoder.decoder)
    bare_copies = [frame.copy() for frame, _ in codes]
    empties = empty_lane(8)
    stop = threading.Event()
    framing = Framing()
    camera = ShowingCamera(empties, codes, bare_copies, showings, decoder, stop, framing)
    rig = build_rig(camera, data_dir, decoder, policy=access_policy(), framing=framing)
    rig.stop = stop
    green, red = rig.pin(GREEN), rig.pin(RED)
    cleared_at = time.monotonic()
    green.clear_states()
    red.clear_states()
    rig.start()
    try:
        if not stop.wait(showings * (GAP_FRAMES + 1) / FPS * 3 + 60):
            raise RuntimeError("the showings did not finish: is the frame loop stuck?")
    finally:
        rig.close()
    ons = sorted(switched_on(green, cleared_at) + switched_on(red, cleared_at))
    ends = [*camera.shown_at[1:], float("inf")]
    light_ms, bare_ms, warm_ms, missed, unpaired = [], [], [], 0, 0
    for showing, (shown, end) in enumerate(zip(camera.shown_at, ends, strict=True)):
        lit = first_after(ons, shown, end)
        bare = decoder.cold_s.get(showing)
        if lit is None or bare is None:
            missed += lit is None
            unpaired += lit is not None  # lit, but the decode thread never timed its bare decode
            continue
        light_ms.append((lit - shown) * 1000)
        bare_ms.append(bare * 1000)
        warm_ms.append(decoder.warm_s[showing] * 1000)
    return Latencies(decoder.name, light_ms, bare_ms, warm_ms, missed, unpaired)


def measure(
    quick: bool = False, backend: str = "auto", showings: int | None = None
) -> list[Figure]:
    count = showings or (30 if quick else 200)
    with tempfile.TemporaryDirectory(prefix="gatescan-latency-") as tmp:
        result = run(count, min(count, 20 if quick else 50), backend, Path(tmp))
    how = (
        f"{len(result.light_ms)} showings at 1280x720, 30 fps, decoder {result.backend}; "
        f"frame handed to the pipeline -> MockFactory pin on"
    )
    bare_p50, bare_p99 = (percentile(result.bare_ms, q) for q in (0.5, 0.99))
    return [
        Figure(
            "pipeline",
            "scan-to-light p50",
            percentile(result.light_ms, 0.5),
            "ms",
            note=how,
            cpu_bound=True,
        ),
        Figure("pipeline", "scan-to-light p99", percentile(result.light_ms, 0.99), "ms", note=how),
        Figure(
            "pipeline",
            "bare decode of the same frames, p50",
            bare_p50,
            "ms",
            note=(
                f"p99 {bare_p99:.2f} ms; same decoder, same frames, cold as the pipeline's; "
                f"decoded again at once (warm): p50 {percentile(result.warm_ms, 0.5):.2f} ms"
            ),
            cpu_bound=True,
        ),
        Figure(
            "pipeline",
            "scan-to-light / bare decode, p50",
            result.ratio_p50,
            "ratio",
            at_most=GOAL_RATIO,
            note=f"p99 / p99: {result.ratio_p99:.2f}; showings without light: {result.missed}"
            + (f", without a bare decode: {result.unpaired}" if result.unpaired else ""),
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(argv, __doc__, "bench.latency_bench", measure, ("showings", int), decimals=3)


if __name__ == "__main__":
    sys.exit(main())
