"""CPU the gate spends per second of video with no code in view: the cost of waiting.

    python -m bench.cpu_bench [--quick] [--seconds 10] [--backend auto]

A camera at 30 fps hands 1280x720 frames to the real frame pipeline, as the agent builds it
(capture thread, handoff slot, scene watch, decode thread with the decoder `make_decoder` gives,
debounce, indicator on MockFactory pins, journal). The figure is this process's CPU time divided
by the wall time, in percent of one core, after a warm-up second.

- empty lane (the goal): a gate's camera looking at its lane with nobody there. One room from
  gatescan/testing/gate_frames.py (background, light, fixed-pattern noise) with fresh sensor noise
  (sigma 3 grey levels) in every frame, as a sensor never repeats itself.
- busy lane, no code (context): a different room in every frame, the worst case of people and
  things passing without showing a code; every frame is decoded.
- busy lane at decode_scale 0.5 (context): the same, a quarter of the pixels decoded.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

try:
    import bench  # noqa: F401
except ImportError:  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import Figure, bench_main
from bench.pipeline_rig import build_rig, empty_lane
from device.camera.memory import MemorySource
from device.camera.source import Frame
from device.decode.backends import make_decoder
from device.frames.framing import Framing
from gatescan.testing.gate_frames import empty_set

FPS = 30.0
GOAL_PERCENT = 10.0
WARM_UP_S = 1.0


@dataclass(frozen=True)
class CpuUse:
    percent: float  # of one core
    fps: float  # frames decoded per second
    dropped: int
    decode_ms: float  # median
    backend: str


def run(
    frames: Sequence[Frame], fps: float, seconds: float, backend: str, framing: Framing
) -> CpuUse:
    decoder = make_decoder(backend)
    with tempfile.TemporaryDirectory(prefix="gatescan-cpu-") as tmp:
        rig = build_rig(MemorySource(frames, fps=fps), Path(tmp), decoder, framing=framing)
        rig.start()
        try:
            rig.stop.wait(WARM_UP_S)
            rig.scanner.stats.snapshot()
            cpu_before, wall_before = time.process_time(), time.monotonic()
            rig.stop.wait(seconds)
            cpu, wall = time.process_time() - cpu_before, time.monotonic() - wall_before
            stats = rig.scanner.stats.snapshot()
        finally:
            rig.close()
    return CpuUse(100 * cpu / wall, stats.decoded_fps, stats.dropped, stats.decode_ms, decoder.name)


def measure(
    quick: bool = False, backend: str = "auto", seconds: float | None = None
) -> list[Figure]:
    duration = seconds or (3.0 if quick else 10.0)
    busy_lane = [gate.frame for gate in empty_set(8)]
    empty = run(empty_lane(), FPS, duration, backend, Framing())
    busy = run(busy_lane, FPS, duration, backend, Framing())
    busy_half = run(busy_lane, FPS, duration, backend, Framing(scale=0.5))

    def how(use: CpuUse, what: str) -> str:
        return (
            f"{what}; decoder {use.backend}, {use.fps:.1f} frames/s decoded, "
            f"decode p50 {use.decode_ms:.2f} ms, {use.dropped} dropped, over {duration:.0f} s"
        )

    return [
        Figure(
            "pipeline",
            "CPU, 1280x720 at 30 fps, empty lane",
            empty.percent,
            "% of a core",
            at_most=GOAL_PERCENT,
            note=how(empty, "process CPU time / wall time; one room, fresh sensor noise per frame"),
            cpu_bound=True,
        ),
        Figure(
            "pipeline",
            "CPU, 1280x720 at 30 fps, busy lane, no code",
            busy.percent,
            "% of a core",
            note=how(busy, "a different room every frame: every frame decoded"),
            cpu_bound=True,
        ),
        Figure(
            "pipeline",
            "CPU, 1280x720 at 30 fps, busy lane, decode_scale 0.5",
            busy_half.percent,
            "% of a core",
            note=how(busy_half, "the same, a quarter of the pixels decoded"),
            cpu_bound=True,
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(argv, __doc__, "bench.cpu_bench", measure, ("seconds", float))


if __name__ == "__main__":
    sys.exit(main())
