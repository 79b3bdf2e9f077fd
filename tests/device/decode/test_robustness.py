"""Robustness on hard material: real photos and generated gate frames, real libraries.

The ensemble runs with its step budget only (no time budget), so a loaded machine cannot change
the result; bench/robustness_bench.py measures the same sets with the gate's default budget.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from device.decode.base import Decoder
from device.decode.ensemble import EnsembleDecoder
from device.decode.zbar import PyzbarDecoder
from device.decode.zxing import ZxingDecoder
from gatescan.testing.decode_runs import gate_runs, photo_runs
from gatescan.testing.gate_frames import hard_set
from gatescan.testing.qr_photos import DATASETS_ENV, DatasetMissing, load_qr_photos


@pytest.fixture(scope="module")
def ensemble() -> EnsembleDecoder:
    return EnsembleDecoder(ZxingDecoder(), PyzbarDecoder(), time_budget=float("inf"))


def test_ensemble_reads_at_least_80_of_the_82_real_photos(ensemble: EnsembleDecoder) -> None:
    photos = load_qr_photos()  # a missing dataset fails here, with where it was looked for
    assert len(photos) == 82

    run = photo_runs({"ensemble": ensemble}, photos)["ensemble"]

    missed = [photo.name for photo, read in zip(photos, run.read, strict=True) if not read]
    assert run.count >= 80, f"the ensemble read {run.count} of 82 qr-photos; missed {missed}"


def test_a_missing_dataset_says_where_it_was_looked_for_and_how_to_point_elsewhere(
    tmp_path: Path,
) -> None:
    with pytest.raises(DatasetMissing, match=DATASETS_ENV) as caught:
        load_qr_photos(tmp_path)
    assert str(tmp_path / "qr-photos") in str(caught.value)


def test_ensemble_reads_well_above_each_single_library_on_hard_gate_frames(
    ensemble: EnsembleDecoder,
) -> None:
    frames = hard_set(40)
    decoders: dict[str, Decoder] = {
        "pyzbar": PyzbarDecoder(),
        "zxing": ZxingDecoder(),
        "ensemble": ensemble,
    }

    reads = {name: run.count for name, run in gate_runs(decoders, frames).items()}

    # 8 frames of 40 is 20 percentage points above the better library.
    assert reads["ensemble"] >= max(reads["pyzbar"], reads["zxing"]) + 8, reads
