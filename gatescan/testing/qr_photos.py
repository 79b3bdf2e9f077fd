"""The qr-photos set: 82 real photographs of QR codes with their expected text
(tests/data/qr-photos, Apache-2.0; its README says where they come from).

An image counts as read when one code found in it has the bytes of the expected text: the text as
the gate's rule reads them (ECI, else UTF-8, else ISO-8859-1), or as Shift-JIS / GB18030, the
charsets the Japanese and Chinese samples are written in and that the reference decoders guessed.
Bytes are scored because the gate keeps bytes and never guesses Shift-JIS.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from device.decode.base import DecodedCode, Frame

DATASET = "qr-photos"


DATASETS_ENV = "GATESCAN_DATASETS"


LEGACY_CHARSETS = ("shift_jis", "gb18030")  # what the photos' non-UTF-8 samples are written in


class DatasetMissing(FileNotFoundError):
    """The qr-photos dataset is not where it was looked for."""


@dataclass(frozen=True)
class Photo:
    name: str  # e.g. "qrcode-2/12.webp"
    grey: Frame
    expected: str  # the expected text, trailing newline stripped


def datasets_folder() -> Path:
    """GATESCAN_DATASETS if set, else the repository's tests/data (a clone has it; a wheel not)."""
    named = os.environ.get(DATASETS_ENV)
    if named:
        return Path(named)
    return Path(__file__).resolve().parents[2] / "tests" / "data"


def load_qr_photos(folder: Path | None = None) -> list[Photo]:
    """Every image of the qr-photos dataset with its expected text, in name order."""
    root = (folder if folder is not None else datasets_folder()) / DATASET
    expected_files = sorted(root.glob("*/*.txt"))
    if not expected_files:
        raise DatasetMissing(
            f"the {DATASET} dataset is not at {root}: run from a clone of the repository (it is"
            f" in tests/data) or set {DATASETS_ENV} to the folder that holds {DATASET}/"
        )
    photos = []
    for text_file in expected_files:
        images = [p for p in text_file.parent.glob(f"{text_file.stem}.*") if p.suffix != ".txt"]
        if len(images) != 1:
            raise DatasetMissing(f"{text_file}: expected one image beside it, found {images}")
        grey = cv2.imread(str(images[0]), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            raise DatasetMissing(f"{images[0]}: OpenCV cannot read this image")
        expected = text_file.read_bytes().decode("utf-8").rstrip("\n")
        name = f"{text_file.parent.name}/{images[0].name}"
        photos.append(Photo(name, np.asarray(grey, dtype=np.uint8), expected))
    return photos


def reads_as(code: DecodedCode, expected: str) -> bool:
    """Whether the code's bytes are `expected` (see the module docstring for the charsets)."""
    texts = [code.text]
    for charset in LEGACY_CHARSETS:
        with contextlib.suppress(UnicodeDecodeError):
            texts.append(code.data.decode(charset))
    return any(text.rstrip("\n") == expected for text in texts)
