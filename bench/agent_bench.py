"""How fast the gate's frame loop runs on replayed 1280x720 frames, through every real stage.

Source (replay, unpaced) -> zbar -> debounce -> credential -> policy -> indicator (gpiozero
MockFactory pins) -> journal (real files, fsync) -> uplink nudge. Three workloads:

- every frame a new code: the most scans per second the loop can journal;
- each code held in view for 10 frames (a person at a gate): frames per second with debouncing;
- empty, slightly noisy frames: the idle frame rate.

Run: python bench/agent_bench.py [--frames N] [--backend pyzbar|zxing]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from device.camera.replay import ReplaySource
from device.clock import SystemClock
from device.debounce import Debounce
from device.decode import make_decoder
from device.events import EventBuilder
from device.health import Health
from device.indicator import GpioIndicator, IndicatorPins
from device.journal import Journal
from device.policy import Policy
from device.scanner import Scanner
from gatescan.samples import sample_cards, write_replay_folder
from protocol import Direction

FRAME = (1280, 720)


def payloads(count: int) -> list[bytes | None]:
    cards = sample_cards()
    out: list[bytes | None] = []
    for index in range(count):
        person = cards[index % len(cards)]
        # A distinct card number per frame so that every frame is a new showing.
        out.append(person.payload().replace(person.id12.encode(), f"079{index:09d}".encode()))
    return out


def run(folder: Path, data_dir: Path, frames: int, hold_frames: int, backend: str) -> dict:
    source = ReplaySource(folder, fps=float(hold_frames), hold=1.0, pace=False)
    factory = MockFactory()
    indicator = GpioIndicator(IndicatorPins(), pin_factory=factory)
    with Journal(data_dir) as journal:
        scanner = Scanner(
            source=source,
            decoder=make_decoder(backend),
            debounce=Debounce(3.0),
            policy=Policy("log"),
            indicator=indicator,
            journal=journal,
            builder=EventBuilder(
                device_id="bench-gate",
                site_id="bench",
                direction=Direction.IN,
                boot_id="bench",
                clock=SystemClock(),
            ),
            health=Health(),
            notify_uplink=lambda: None,
        )
        started = time.perf_counter()
        scans = 0
        for _ in range(frames):
            scans += len(scanner.process(source.read()))
        elapsed = time.perf_counter() - started
    indicator.close()
    return {"frames_per_s": frames / elapsed, "scans_per_s": scans / elapsed, "scans": scans}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--backend", default="pyzbar")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_replay_folder(root / "codes", payloads(args.frames), frame_size=FRAME)
        write_replay_folder(root / "empty", [None], frame_size=FRAME, noise=6.0)
        for name, folder, hold in (
            ("every frame a new code", root / "codes", 1),
            ("each code held 10 frames", root / "codes", 10),
            ("empty frames", root / "empty", 1),
        ):
            result = run(
                folder, root / f"data-{hold}-{folder.name}", args.frames, hold, args.backend
            )
            rows.append((name, result))
    print(f"agent frame loop, {FRAME[0]}x{FRAME[1]} replayed frames, backend {args.backend}, "
          f"{args.frames} frames per row")  # fmt: skip
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"{'workload':28} {'frames/s':>9} {'scans/s':>8} {'scans':>6}")
    for name, result in rows:
        print(
            f"{name:28} {result['frames_per_s']:9.1f} {result['scans_per_s']:8.1f} "
            f"{result['scans']:6d}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
