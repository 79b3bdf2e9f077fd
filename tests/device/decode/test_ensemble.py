"""The ensemble: cheap on every frame, more work only where a code is likely, and bounded.

Real zxing-cpp and real libzbar throughout. The budget is checked by counting steps (and with a
clock passed in), never by timing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest

from device.decode.backends import make_decoder
from device.decode.base import DecodedCode, Frame
from device.decode.ensemble import RESCUE_STEPS, Crop, EnsembleDecoder, RescueStep
from device.decode.zbar import PyzbarDecoder
from device.decode.zxing import ZxingDecoder
from gatescan.testing.gate_frames import HARD, empty_set, gate_frame, payloads
from gatescan.testing.samples import blank_frame, draw_code, render_code, sample_people

UNBOUNDED_TIME = float("inf")  # tests bound the work by steps only, so load cannot change results
CARD = sample_people()[0]


@pytest.fixture(scope="module")
def zxing() -> ZxingDecoder:
    return ZxingDecoder()


@pytest.fixture(scope="module")
def zbar() -> Iterator[PyzbarDecoder]:
    decoder = PyzbarDecoder()
    yield decoder
    decoder.close()


@pytest.fixture
def ensemble(zxing: ZxingDecoder, zbar: PyzbarDecoder) -> EnsembleDecoder:
    return EnsembleDecoder(zxing, zbar, time_budget=UNBOUNDED_TIME)


def scrambled_code_frame(seed: int = 3) -> Frame:
    """A frame with a patch of random modules where a code would be: likely, never readable."""
    rng = np.random.default_rng(seed)
    modules = np.where(rng.random((45, 45)) < 0.5, 40, 220).astype(np.uint8)
    patch = np.repeat(np.repeat(modules, 5, 0), 5, 1)
    frame = blank_frame((1280, 720), noise=5, seed=seed, background=200)
    frame[200 : 200 + patch.shape[0], 500 : 500 + patch.shape[1]] = patch
    return frame


def test_hard_gate_frame_that_neither_library_reads_alone_is_read_by_the_ensemble(
    zxing: ZxingDecoder, zbar: PyzbarDecoder, ensemble: EnsembleDecoder
) -> None:
    # A phone at 2.7 pixels per module, tilted 27 degrees, moving, glare and noise 9.8: found by
    # searching seeds once; deterministic from here on.
    shown = gate_frame(payloads()[0], HARD, np.random.default_rng(29))
    assert shown.payload is not None

    assert shown.payload not in [code.data for code in zxing.decode(shown.frame)]
    assert shown.payload not in [code.data for code in zbar.decode(shown.frame)]
    assert shown.payload not in [
        code.data for code in PyzbarDecoder(half_size_first=False).decode(shown.frame)
    ]
    assert ensemble.decode(shown.frame) == [DecodedCode(shown.payload)]
    assert ensemble.last.read_by not in ("", "cheap pass")


def test_a_plain_code_is_read_by_the_cheap_pass_alone(ensemble: EnsembleDecoder) -> None:
    frame = render_code(CARD, frame_size=(1280, 720), module_px=4, noise=6)

    assert ensemble.decode(frame) == [DecodedCode(CARD)]
    assert ensemble.last.read_by == "cheap pass"
    assert ensemble.last.steps_tried == []


@pytest.mark.parametrize("noise", [0, 6, 12])
def test_empty_noisy_frames_give_nothing_and_no_rescue_work(
    ensemble: EnsembleDecoder, noise: int
) -> None:
    assert ensemble.decode(blank_frame((1280, 720), noise=noise, background=140)) == []
    assert (ensemble.last.regions, ensemble.last.steps_tried) == ([], [])


def test_empty_room_frames_give_nothing_and_no_rescue_work(ensemble: EnsembleDecoder) -> None:
    # Doors, shelves and their shadows: edges, but in one direction at a time.
    for room in empty_set(count=12):
        assert ensemble.decode(room.frame) == []
        assert ensemble.last.steps_tried == []


def test_a_light_on_dark_code_is_read(ensemble: EnsembleDecoder) -> None:
    # Some phone apps show the code inverted in dark mode.
    frame = 255 - render_code(CARD, frame_size=(1280, 720), module_px=4, noise=6)

    assert ensemble.decode(frame) == [DecodedCode(CARD)]


def test_rescue_stops_after_max_steps_on_a_frame_nothing_reads(
    zxing: ZxingDecoder, zbar: PyzbarDecoder
) -> None:
    bounded = EnsembleDecoder(zxing, zbar, max_steps=3, time_budget=UNBOUNDED_TIME)

    assert bounded.decode(scrambled_code_frame()) == []
    assert bounded.last.regions  # the patch looked like a code, so the ensemble tried
    assert len(bounded.last.steps_tried) == 3
    assert bounded.last.out_of_budget


def test_without_a_budget_every_step_is_tried_once_per_region(
    zxing: ZxingDecoder, zbar: PyzbarDecoder
) -> None:
    unbounded = EnsembleDecoder(zxing, zbar, max_steps=1000, time_budget=UNBOUNDED_TIME)

    assert unbounded.decode(scrambled_code_frame()) == []
    regions = len(unbounded.last.regions)
    # The patch is small and away from the frame edge: every step but the quiet zone applies.
    edge_steps = [step for step in RESCUE_STEPS if step.name.startswith("zxing quiet zone")]
    assert len(unbounded.last.steps_tried) == regions * (len(RESCUE_STEPS) - len(edge_steps))
    assert not unbounded.last.out_of_budget


def test_no_rescue_step_starts_after_the_time_budget_is_spent(
    zxing: ZxingDecoder, zbar: PyzbarDecoder
) -> None:
    ticks = itertools.count()  # a clock that moves one second every time it is read
    bounded = EnsembleDecoder(
        zxing, zbar, max_steps=1000, time_budget=2.5, clock=lambda: float(next(ticks))
    )

    assert bounded.decode(scrambled_code_frame()) == []
    # Read at 0 (start: deadline 2.5), 1 and 2 (steps start), 3 (past the deadline: stop).
    assert len(bounded.last.steps_tried) == 2
    assert bounded.last.out_of_budget


def test_rescue_stops_at_the_first_step_that_reads(zxing: ZxingDecoder) -> None:
    prepared: list[str] = []

    def blank_then_record(name: str, readable: bool) -> RescueStep:
        def prepare(crop: Crop) -> Frame:
            prepared.append(name)
            if readable:
                return render_code(CARD, frame_size=(400, 400), module_px=4)
            return blank_frame((400, 400))

        return RescueStep(name, prepare)

    steps = [
        blank_then_record("nothing", False),
        blank_then_record("reads", True),
        blank_then_record("never", True),
    ]
    decoder = EnsembleDecoder(zxing, None, steps=steps, time_budget=UNBOUNDED_TIME)
    frame = scrambled_code_frame()

    assert decoder.decode(frame) == [DecodedCode(CARD)]
    regions = len(decoder.last.regions)
    assert prepared == ["nothing"] * regions + ["reads"]
    assert decoder.last.read_by == "reads"


def test_without_zbar_the_zbar_steps_are_left_out(zxing: ZxingDecoder) -> None:
    alone = EnsembleDecoder(zxing, None, max_steps=1000, time_budget=UNBOUNDED_TIME)

    assert "zbar" not in alone.step_names
    assert alone.decode(scrambled_code_frame()) == []
    assert alone.last.steps_tried
    assert not any("zbar" in step for step in alone.last.steps_tried)


def test_two_codes_read_by_the_cheap_pass_are_both_returned(ensemble: EnsembleDecoder) -> None:
    first, second = sample_people()[1], "Lý Ơn".encode()
    frame = draw_code(blank_frame((1280, 720)), first, module_px=4, center=(320, 360))
    frame = draw_code(frame, second, module_px=4, center=(960, 360))

    assert sorted(code.data for code in ensemble.decode(frame)) == sorted([first, second])


def test_auto_is_the_ensemble_with_zbar_as_its_second_library() -> None:
    decoder = make_decoder("auto")

    assert isinstance(decoder, EnsembleDecoder)
    assert decoder.step_names == tuple(step.name for step in RESCUE_STEPS)
    assert "zbar" in decoder.step_names
