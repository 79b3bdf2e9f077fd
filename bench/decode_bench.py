"""Decode time per frame: every backend on the same 1280x720 grey frames, with a code and empty.

Run from the source tree: `.venv/bin/python -m bench.decode_bench [--frames N] [--seed S]`.

Frames with a code: half are flat codes drawn straight on a grey frame (2 to 6 pixels per
module, noise 6), half are easy gate frames (gatescan/testing/gate_frames.py: a phone or card, 4-8
pixels per module, mild tilt, blur and glare). Empty frames: half flat grey with noise 6, half a
room with noise 4-10. Backends are run in turn on each frame, so that a busy machine slows them
alike and their ratio holds; three passes over the set, and a frame's time is the least of its
three (another process taking the CPU mid-decode is not decode time). Reported: median and 95th
percentile in ms over the frames, and how many frames gave exactly the expected result (the
code's bytes, or nothing). A Raspberry Pi 5 core runs such
code at about 0.35x of a desktop x86 core, a Pi 4 at about half of that.
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

import numpy as np

from bench.figures import Figure, median, percentile, table
from bench.run_all import cpu_model
from device.decode.backends import make_decoder
from device.decode.base import Decoder, Frame
from device.decode.ensemble import EnsembleDecoder
from device.decode.zbar import PyzbarDecoder
from device.decode.zxing import ZxingDecoder
from gatescan.testing.gate_frames import easy_set, empty_set
from gatescan.testing.samples import blank_frame, render_code, sample_people

FRAME_SIZE = (1280, 720)
NOISE = 6.0  # grey levels: a camera's sensor noise in a lit entrance
P95_GOAL_MS = 3.0
DEFAULT = "ensemble (default)"
Case = tuple[Frame, bytes | None]  # a frame and the code it shows (None: empty)
Decode = Callable[[Frame], list[bytes]]


@dataclass(frozen=True)
class Cell:
    times_ms: list[float]
    correct: int

    @property
    def median_ms(self) -> float:
        return median(self.times_ms)

    @property
    def p95_ms(self) -> float:
        return percentile(self.times_ms, 0.95)

    @property
    def frames(self) -> int:
        return len(self.times_ms)


def payloads() -> list[bytes]:
    return [
        *sample_people(),
        "Uyên".encode(),
        b"https://example.vn/visitor-pass/7F3A-22",
        ("Khách: Lê Hoàng Phương Anh, phòng 402, " * 6).encode(),
    ]


def flat_codes(size: tuple[int, int], count: int, rng: np.random.Generator) -> list[Case]:
    """Codes drawn straight on a grey frame: varied size, place, background and content."""
    width, height = size
    options = payloads()
    made: list[Case] = []
    while len(made) < count:
        data = options[int(rng.integers(len(options)))]
        center = (int(rng.integers(width // 4, 3 * width // 4)), int(rng.integers(height)))
        try:
            frame = render_code(
                data,
                frame_size=size,
                module_px=int(rng.integers(2, 7)),
                center=center,
                background=int(rng.integers(150, 256)),
                noise=NOISE,
                seed=int(rng.integers(2**31)),
            )
        except ValueError:
            continue  # this code does not fit at that size and place: draw another
        made.append((frame, data))
    return made


def flat_empty(size: tuple[int, int], count: int, rng: np.random.Generator) -> list[Case]:
    return [
        (blank_frame(size, noise=NOISE, seed=int(rng.integers(2**31)), background=160), None)
        for _ in range(count)
    ]


def cases(count: int, seed: int) -> tuple[list[Case], list[Case]]:
    """(frames with a code, empty frames) at 1280x720, `count` of each."""
    rng = np.random.default_rng(seed)
    with_code = flat_codes(FRAME_SIZE, count - count // 2, rng) + [
        (item.frame, item.payload) for item in easy_set(count // 2, seed=seed)
    ]
    empty = flat_empty(FRAME_SIZE, count - count // 2, rng) + [
        (item.frame, None) for item in empty_set(count // 2, seed=seed)
    ]
    return with_code, empty


def backends() -> dict[str, Decode]:
    """Our backends by name; each returns the bytes of the codes it found."""
    zxing = ZxingDecoder()
    chosen: dict[str, Decoder] = {
        DEFAULT: make_decoder("auto"),
        "zxing-cpp": zxing,
        "pyzbar, half size first": PyzbarDecoder(),
        "pyzbar, full frame (zbar as it comes)": PyzbarDecoder(half_size_first=False),
    }
    if not isinstance(chosen[DEFAULT], EnsembleDecoder):
        raise RuntimeError("the default backend is not the ensemble: is zxing-cpp installed?")
    return {name: _bytes_of(decoder) for name, decoder in chosen.items()}


def _bytes_of(decoder: Decoder) -> Decode:
    return lambda frame: [code.data for code in decoder.decode(frame)]


def run_in_turn(
    decoders: dict[str, Decode], frames: Sequence[Case], passes: int = 3
) -> dict[str, Cell]:
    """Every frame through every decoder in turn, in `passes` passes over all the frames.

    A frame's time is its least over the passes: on a shared machine another process taking the
    CPU in the middle of one decode would otherwise count as decode time. The passes go over the
    whole set (about 90 MB of frames), so no decode finds its frame still in the CPU's cache.
    """
    for decode in decoders.values():
        decode(frames[0][0])  # library loading and first allocations are not per-frame cost
    times = {name: [float("inf")] * len(frames) for name in decoders}
    correct = dict.fromkeys(decoders, 0)
    for run in range(passes):
        for index, (frame, expected) in enumerate(frames):
            for name, decode in decoders.items():
                start = time.perf_counter()
                found = decode(frame)
                elapsed = (time.perf_counter() - start) * 1000
                times[name][index] = min(times[name][index], elapsed)
                if run == 0:
                    correct[name] += found == ([] if expected is None else [expected])
    return {name: Cell(times[name], correct[name]) for name in decoders}


def measure(quick: bool = False, seed: int = 2021) -> list[Figure]:
    with_code, empty = cases(20 if quick else 100, seed)
    decoders = backends()
    passes = 1 if quick else 3
    coded = run_in_turn(decoders, with_code, passes)
    blank = run_in_turn(decoders, empty, passes)
    figures = [
        _p95_figure(DEFAULT, "with a code", coded[DEFAULT], P95_GOAL_MS),
        _p95_figure(DEFAULT, "empty", blank[DEFAULT], P95_GOAL_MS),
    ]
    for name in decoders:
        if name != DEFAULT:
            figures += [
                _p95_figure(name, "with a code", coded[name]),
                _p95_figure(name, "empty", blank[name]),
            ]
    half, full = coded["pyzbar, half size first"], coded["pyzbar, full frame (zbar as it comes)"]
    figures.append(
        Figure(
            "decode",
            "pyzbar half size first / full frame, mean time per frame with a code",
            float(np.mean(half.times_ms) / np.mean(full.times_ms)),
            "ratio",
            note=f"reads {half.correct} vs {full.correct} of {half.frames}; empty frames "
            f"{np.mean(blank['pyzbar, half size first'].times_ms):.1f} vs "
            f"{np.mean(blank['pyzbar, full frame (zbar as it comes)'].times_ms):.1f} ms",
        )
    )
    return figures


def _p95_figure(name: str, content: str, cell: Cell, goal: float | None = None) -> Figure:
    return Figure(
        "decode",
        f"p95 per 1280x720 frame, {content}, {name}",
        cell.p95_ms,
        "ms",
        at_most=goal,
        note=f"median {cell.median_ms:.2f} ms; right {cell.correct}/{cell.frames}",
        cpu_bound=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--frames", type=int, default=100, help="frames of each kind")
    parser.add_argument("--seed", type=int, default=2021)
    args = parser.parse_args()
    print(f"command: python -m bench.decode_bench {shlex.join(sys.argv[1:])}".rstrip())
    cpu = cpu_model() or platform.processor() or "unknown CPU"
    print(
        f"machine: {platform.machine()} {cpu}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.2f}, Python {platform.python_version()}"
    )
    with_code, empty = cases(args.frames, args.seed)
    decoders = {**backends(), **_plain_pyzbar()}
    print(f"\n{'backend':40} {'content':7} {'median ms':>9} {'p95 ms':>8} {'right':>8}")
    for label, frames in (("code", with_code), ("empty", empty)):
        for name, cell in run_in_turn(decoders, frames).items():
            right = f"{cell.correct}/{cell.frames}"
            print(f"{name:40} {label:7} {cell.median_ms:9.2f} {cell.p95_ms:8.2f} {right:>8}")
    print(
        "\nright: the exact bytes of the code (or nothing on an empty frame). pyzbar's text "
        "guess turns most Vietnamese payloads into mojibake even when it finds the code.\n"
    )
    print(table(measure(seed=args.seed)))
    return 0


def _plain_pyzbar() -> dict[str, Decode]:
    from pyzbar.pyzbar import ZBarSymbol
    from pyzbar.pyzbar import decode as pyzbar_decode

    return {
        "pyzbar.decode, all symbologies": lambda f: [d.data for d in pyzbar_decode(f)],
        "pyzbar.decode, QR only (text guess)": lambda f: [
            d.data for d in pyzbar_decode(f, symbols=[ZBarSymbol.QRCODE])
        ],
    }


if __name__ == "__main__":
    raise SystemExit(main())
