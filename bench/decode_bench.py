"""Decode time per frame: pyzbar default vs our pyzbar (QR only, binary mode) vs zxing-cpp.

Run from the source tree: `.venv/bin/python bench/decode_bench.py [--frames N] [--seed S]`.
Each cell decodes N generated frames (codes of varied size, position and content, light noise;
or empty noisy frames) and prints the median and 95th percentile in ms, and how many frames gave
the expected result. Figures are for this machine: a Raspberry Pi 5 runs about 0.35x as fast as a
desktop x86 core, a Pi 4 about half of that.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:
    import device  # noqa: F401  (installed by `make bootstrap`)
except ImportError:  # run straight from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from device.decode import Frame, PyzbarDecoder, ZxingDecoder
from gatescan.samples import blank_frame, render_code, sample_people

SIZES = ((640, 480), (1280, 720))
NOISE = 6.0  # grey levels: a camera's sensor noise in a lit entrance
ROW = "{:36} {:9} {:7} {:>9} {:>8} {:>7}"


@dataclass(frozen=True)
class Cell:
    median_ms: float
    p95_ms: float
    correct: int
    frames: int


def payloads() -> list[bytes]:
    return [
        *sample_people(),
        "Uyên".encode(),
        b"https://example.vn/visitor-pass/7F3A-22",
        ("Khách: Lê Hoàng Phương Anh, phòng 402, " * 6).encode(),
    ]


def frames_with_codes(
    size: tuple[int, int], count: int, rng: np.random.Generator
) -> list[tuple[Frame, bytes]]:
    width, height = size
    options = payloads()
    made: list[tuple[Frame, bytes]] = []
    while len(made) < count:
        data = options[int(rng.integers(len(options)))]
        module_px = int(rng.integers(2, 7))
        center = (int(rng.integers(width // 4, 3 * width // 4)), int(rng.integers(height)))
        try:
            frame = render_code(
                data,
                frame_size=size,
                module_px=module_px,
                center=center,
                background=int(rng.integers(150, 256)),
                noise=NOISE,
                seed=int(rng.integers(2**31)),
            )
        except ValueError:
            continue  # this code does not fit at that size and place: draw another
        made.append((frame, data))
    return made


def empty_frames(size: tuple[int, int], count: int, rng: np.random.Generator) -> list[Frame]:
    return [blank_frame(size, noise=NOISE, seed=int(rng.integers(2**31))) for _ in range(count)]


def measure(
    decode: Callable[[Frame], list[bytes]], cases: Sequence[tuple[Frame, bytes | None]]
) -> Cell:
    decode(cases[0][0])  # warm up: library loading and first allocations are not per-frame cost
    times, correct = [], 0
    for frame, expected in cases:
        start = time.perf_counter()
        found = decode(frame)
        times.append((time.perf_counter() - start) * 1000)
        correct += found == ([] if expected is None else [expected])
    return Cell(float(np.median(times)), float(np.percentile(times, 95)), correct, len(cases))


def backends() -> dict[str, Callable[[Frame], list[bytes]]]:
    from pyzbar.pyzbar import ZBarSymbol
    from pyzbar.pyzbar import decode as pyzbar_default

    ours, zxing = PyzbarDecoder(), ZxingDecoder()
    return {
        "pyzbar default (all symbologies)": lambda f: [d.data for d in pyzbar_default(f)],
        "pyzbar.decode QR-only (text guess)": lambda f: [
            d.data for d in pyzbar_default(f, symbols=[ZBarSymbol.QRCODE])
        ],
        "pyzbar QR-only, binary (ours)": lambda f: [c.data for c in ours.decode(f)],
        "zxing-cpp (QR)": lambda f: [c.data for c in zxing.decode(f)],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="frames per cell (default 60)")
    parser.add_argument("--seed", type=int, default=2021)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"machine: {platform.machine()} {_cpu_model()}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.2f}, Python {platform.python_version()}; "
        f"{args.frames} frames per cell, noise {NOISE}"
    )
    print()
    print(ROW.format("backend", "frame", "content", "median ms", "p95 ms", "correct"))
    decoders = backends()
    for width, height in SIZES:
        with_code = frames_with_codes((width, height), args.frames, rng)
        empty = [(f, None) for f in empty_frames((width, height), args.frames, rng)]
        for name, decode in decoders.items():
            for label, cases in (("code", with_code), ("empty", empty)):
                cell = measure(decode, cases)
                print(
                    ROW.format(
                        name,
                        f"{width}x{height}",
                        label,
                        f"{cell.median_ms:.2f}",
                        f"{cell.p95_ms:.2f}",
                        f"{cell.correct}/{cell.frames}",
                    )
                )
    print()
    print(
        "correct: the exact bytes of the code (or nothing on an empty frame). pyzbar's text guess "
        "turns most Vietnamese payloads into mojibake even when it finds the code."
    )
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    raise SystemExit(main())
