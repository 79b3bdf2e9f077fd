"""How fast the gate's frame loop runs on 1280x720 frames, through every real stage.

    python -m bench.agent_bench [--quick] [--frames 60] [--backend auto]

The agent's pipeline as `build_agent` wires it (bench/pipeline_rig.py): capture thread ->
one-slot handoff -> scene watch -> decoder -> debounce -> credential -> policy -> indicator
(gpiozero MockFactory pins) -> journal (real files, fdatasync) -> uplink nudge. The camera hands
its next frame as soon as the decode thread has taken the previous one (a camera exactly as fast
as the loop: nothing dropped, nothing waited for), so frames/s is the loop's capacity.
Three workloads:

- every frame a new code: the most scans per second the loop can light and journal;
- each code held in view for 10 frames (a person at a gate): frames per second with debouncing
  (repeated frames of an unchanged scene are not decoded, as in the agent);
- empty frames, a different room each (gatescan/testing/gate_frames.py): the loop decoding every
  frame.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

try:
    import bench  # noqa: F401
except ImportError:  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import Figure, bench_main
from bench.pipeline_rig import build_rig, distinct_cards
from device.camera.source import CameraError, Frame
from device.decode.backends import make_decoder
from device.scanner import Scanner
from gatescan.testing.gate_frames import empty_set
from gatescan.testing.samples import render_code

FRAME = (1280, 720)


class LockstepCamera:
    """Hands `frames` in order, each once the decode thread took the one before; then stops."""

    def __init__(self, frames: Sequence[Frame], stop: threading.Event) -> None:
        self.frames = frames
        self.stop = stop
        self.scanner: Scanner | None = None
        self.started = self.finished = 0.0
        self._next = 0

    def read(self) -> Frame:
        assert self.scanner is not None
        if not self.scanner.handoff.wait_taken(timeout=30):
            raise CameraError("the decode thread took no frame for 30 s")
        if self._next == 0:
            self.started = time.perf_counter()
        if self._next == len(self.frames):
            self.finished = time.perf_counter()
            self.stop.set()
        frame = self.frames[min(self._next, len(self.frames) - 1)]
        self._next += 1
        return frame

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class LoopRun:
    frames_per_s: float
    scans_per_s: float
    scans: int
    decoder: str


def run(frames: Sequence[Frame], data_dir: Path, backend: str) -> LoopRun:
    stop = threading.Event()
    camera = LockstepCamera(frames, stop)
    rig = build_rig(camera, data_dir, make_decoder(backend))
    camera.scanner, rig.stop = rig.scanner, stop
    rig.start()
    try:
        if not stop.wait(600):
            raise RuntimeError("the frame loop did not get through the frames in 10 minutes")
    finally:
        rig.close()
    elapsed = camera.finished - camera.started
    scans = rig.scanner.stats.scans
    return LoopRun(len(frames) / elapsed, scans / elapsed, scans, rig.scanner.decoder.name)


def workloads(count: int) -> dict[str, list[Frame]]:
    codes = [render_code(payload, frame_size=FRAME, noise=3.0) for payload in distinct_cards(count)]
    held = [frame for frame in codes[: max(1, count // 10)] for _ in range(10)]
    rooms = [gate.frame for gate in empty_set(8)]
    return {
        "every frame a new code": codes,
        "each code held 10 frames": held,
        "empty frames, every one decoded": [rooms[i % len(rooms)] for i in range(count)],
    }


def measure(quick: bool = False, backend: str = "auto", frames: int | None = None) -> list[Figure]:
    count = frames or (20 if quick else 60)
    figures = []
    with tempfile.TemporaryDirectory(prefix="gatescan-agent-") as tmp:
        for index, (name, shown) in enumerate(workloads(count).items()):
            result = run(shown, Path(tmp) / f"data-{index}", backend)
            note = f"{len(shown)} frames at {FRAME[0]}x{FRAME[1]}, decoder {result.decoder}"
            figures.append(
                Figure(
                    "pipeline", f"frame loop, {name}", result.frames_per_s, "frames/s", note=note
                )
            )
            if result.scans:
                figures.append(
                    Figure("pipeline", f"scans lit and journaled, {name}", result.scans_per_s,
                           "scans/s", note=f"{result.scans} scans")
                )  # fmt: skip
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(argv, __doc__, "bench.agent_bench", measure, ("frames", int), decimals=1)


if __name__ == "__main__":
    sys.exit(main())
