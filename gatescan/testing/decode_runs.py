"""How many codes of a set each decoder reads, and the time per item: over the qr-photos or over
generated gate frames (an item is read when the decoder found exactly its payload).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from device.decode.base import DecodedCode, Decoder, Frame
from gatescan.testing.gate_frames import GateFrame
from gatescan.testing.qr_photos import Photo, reads_as


@dataclass(frozen=True)
class Run:
    """One decoder over one set: which items it read, and the time per item in ms."""

    read: list[bool]
    ms: list[float]

    @property
    def count(self) -> int:
        return sum(self.read)


def run_over(
    decoder: Decoder,
    frames: Sequence[Frame],
    is_right: Sequence[Callable[[list[DecodedCode]], bool]],
) -> Run:
    decoder.decode(frames[0])  # warm up: first-call allocations are not per-frame cost
    read, ms = [], []
    for frame, right in zip(frames, is_right, strict=True):
        start = time.perf_counter()
        codes = decoder.decode(frame)
        ms.append((time.perf_counter() - start) * 1000)
        read.append(right(codes))
    return Run(read, ms)


def photo_runs(decoders: dict[str, Decoder], photos: Sequence[Photo]) -> dict[str, Run]:
    checks = [_photo_check(photo.expected) for photo in photos]
    return {name: run_over(d, [p.grey for p in photos], checks) for name, d in decoders.items()}


def gate_runs(decoders: dict[str, Decoder], frames: Sequence[GateFrame]) -> dict[str, Run]:
    checks = [_payload_check(item.payload) for item in frames]
    return {name: run_over(d, [f.frame for f in frames], checks) for name, d in decoders.items()}


def _photo_check(expected: str) -> Callable[[list[DecodedCode]], bool]:
    return lambda codes: any(reads_as(code, expected) for code in codes)


def _payload_check(payload: bytes | None) -> Callable[[list[DecodedCode]], bool]:
    return lambda codes: [code.data for code in codes] == ([] if payload is None else [payload])


def either(first: Run, second: Run) -> int:
    return sum(a or b for a, b in zip(first.read, second.read, strict=True))
