"""The read rate the frame loop counts for telemetry: frames where a code was read against
frames where one was likely, per interval, from real decodes (zxing-cpp and zbar, real journal
files). Only a decoder that can tell where a code was likely (the ensemble) counts; zbar or
zxing alone report None."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from device.camera.memory import MemorySource
from device.decode.backends import make_decoder
from device.decode.base import Decoder
from device.indicator.base import IndicatorState
from device.journal.journal import Journal
from device.scanner import Scanner
from device.system.clock import FixedSyncClock
from device.system.health import Health
from device.verdict.debounce import Debounce
from device.verdict.events import EventBuilder
from device.verdict.policy import Policy
from gatescan.testing.samples import blank_frame, render_code
from protocol.verdicts import Direction, Reason, VerdictStatus

PAYLOAD = "079193012345||Nguyễn Thị Thu Uyên|05061993|Nữ|Huế|21042021".encode()
SIZE = (1280, 720)


def good_and_damaged() -> tuple[np.ndarray, np.ndarray]:
    """A code, and the same code with the middle of the symbol blanked: found, never read."""
    good = render_code(PAYLOAD, frame_size=SIZE, module_px=6)
    ys, xs = np.nonzero(good < 128)
    top, left, height, width = ys.min(), xs.min(), np.ptp(ys), np.ptp(xs)
    damaged = good.copy()
    damaged[top + height * 3 // 10 : top + height * 7 // 10,
            left + width * 3 // 10 : left + width * 7 // 10] = 255  # fmt: skip
    return good, damaged


class CountsAtTheLight:
    """Notes the scanner's read count each time the light changes: it must not have moved yet."""

    def __init__(self) -> None:
        self.scanner: Scanner | None = None
        self.reads_when_lit: list[int] = []

    def show(self, status: VerdictStatus, reason: Reason = Reason.OK) -> None:
        assert self.scanner is not None
        self.reads_when_lit.append(self.scanner.stats.read)

    def set_state(self, state: IndicatorState) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path) as opened:
        yield opened


def scanner_with(decoder: Decoder, journal: Journal, indicator: CountsAtTheLight) -> Scanner:
    indicator.scanner = Scanner(
        source=MemorySource([blank_frame((8, 8))]),
        decoder=decoder,
        debounce=Debounce(3.0),
        policy=Policy("log"),
        indicator=indicator,
        journal=journal,
        builder=EventBuilder(
            device_id="gate-1",
            site_id="hq",
            direction=Direction.IN,
            boot_id="boot-1",
            clock=FixedSyncClock(),
        ),
        health=Health(),
        notify_uplink=lambda: None,
    )
    return indicator.scanner


def test_the_ensemble_counts_frames_with_a_code_and_frames_read_per_interval(
    journal: Journal,
) -> None:
    good, damaged = good_and_damaged()
    indicator = CountsAtTheLight()
    scanner = scanner_with(make_decoder("ensemble"), journal, indicator)
    frames = [blank_frame(SIZE), good, good, damaged, damaged, damaged]
    frames += [blank_frame(SIZE, noise=8.0, seed=seed) for seed in range(2)]

    read = [bool(scanner.process(frame)) for frame in frames]
    first = scanner.stats.snapshot()
    scanner.process(blank_frame(SIZE))
    quiet = scanner.stats.snapshot()

    # The good code is read twice (a second showing within the debounce: read, not recorded).
    assert read == [False, True, False, False, False, False, False, False]
    assert (first.frames_with_code, first.frames_read) == (5, 2)
    assert (quiet.frames_with_code, quiet.frames_read) == (0, 0)  # counted, nothing in view
    assert indicator.reads_when_lit == [0], "counted after the light, never before it"


def test_a_decoder_that_cannot_tell_reports_no_read_rate_rather_than_a_full_one(
    journal: Journal,
) -> None:
    good, damaged = good_and_damaged()
    for backend in ("pyzbar", "zxing"):
        scanner = scanner_with(make_decoder(backend), journal, CountsAtTheLight())
        for frame in (good, damaged, blank_frame(SIZE)):
            scanner.process(frame)

        taken = scanner.stats.snapshot()

        assert scanner.stats.scans == 1, backend  # it reads: it only cannot tell what it missed
        assert (taken.frames_with_code, taken.frames_read) == (None, None), backend
