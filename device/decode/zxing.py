"""QR codes through zxing-cpp (PyPI ``zxing-cpp``, the ``fast`` extra), with exact bytes.

QR only (models 1 and 2); faster than zbar and reads more hard frames. Reports the ECI charset
when the whole code is under one ECI. `ZxingDecoder.attempt` is the ensemble's cheap pass: it
also reports where zxing found a symbol that it could not decode.
"""

from __future__ import annotations

import importlib
import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from device.decode.base import DecodedCode, DecoderUnavailable, Frame, grey_pixels
from device.decode.preprocess import Region

MIN_CODE_PX = 21  # a QR code has at least 21 modules a side: fewer pixels cannot be one


@dataclass(frozen=True)
class Attempt:
    """One zxing pass: the codes it read, and the outlines of symbols it found but could not."""

    codes: list[DecodedCode]
    undecoded: list[Region]


class ZxingDecoder:
    """QR codes through zxing-cpp (the ``fast`` extra), with exact bytes and the ECI charset."""

    name = "zxing"

    def __init__(self) -> None:
        try:
            self._zxing: Any = importlib.import_module("zxingcpp")
        except ImportError as exc:
            raise DecoderUnavailable(
                f"the zxing decoder needs zxing-cpp (pip install 'gatescan[fast]'): {exc}"
            ) from exc
        formats = self._zxing.BarcodeFormat
        # zxing-cpp 3 made QRCode the family (Micro QR, rMQR too); zbar reads neither, so the
        # two backends agree only on the classic QR models.
        self._formats = (
            (formats.QRCodeModel1, formats.QRCodeModel2)
            if hasattr(formats, "QRCodeModel2")
            else formats.QRCode
        )
        # HexECI puts the ECI designators into `text`; `bytes` stays the bare data.
        self._text_mode = getattr(self._zxing.TextMode, "HexECI", None)
        self.global_binarizer = self._zxing.Binarizer.GlobalHistogram
        self._lock = threading.Lock()

    def decode(self, frame: Frame) -> list[DecodedCode]:
        grey = grey_pixels(frame)
        if grey is None:
            return []
        return self.read(grey)

    def read(self, grey: Frame, binarizer: Any = None) -> list[DecodedCode]:
        """One zxing pass over a 2-D uint8 image; `binarizer` None is zxing's LocalAverage."""
        return [self._code_of(result) for result in self._results(grey, binarizer, False)]

    def attempt(self, grey: Frame, *, downscale: bool = True) -> Attempt:
        """One pass that also tells where a symbol was found but did not decode.

        `downscale` False skips zxing's extra passes over smaller copies of the image: at 720p
        they cost about as much as the main pass and read nothing more on our frame sets.
        """
        results = self._results(grey, None, True, downscale)
        outlines = [_outline(result.position, grey.shape) for result in results if not result.valid]
        return Attempt(
            [self._code_of(result) for result in results if result.valid],
            [outline for outline in outlines if outline is not None],
        )

    def _results(
        self, grey: Frame, binarizer: Any, return_errors: bool, downscale: bool = True
    ) -> list[Any]:
        if any(stride < 0 for stride in grey.strides):
            grey = np.ascontiguousarray(grey)  # zxing reads positive strides without a copy
        options: dict[str, Any] = {"formats": self._formats}
        if self._text_mode is not None:
            options["text_mode"] = self._text_mode
        if binarizer is not None:
            options["binarizer"] = binarizer
        if return_errors:
            options["return_errors"] = True
        if not downscale:
            options["try_downscale"] = False
        with self._lock:
            return list(self._zxing.read_barcodes(grey, **options))

    def _code_of(self, result: Any) -> DecodedCode:
        charset = _eci_charset(result.text) if self._text_mode is not None else None
        return DecodedCode(bytes(result.bytes), charset)


def _outline(position: Any, shape: tuple[int, ...]) -> Region | None:
    """The bounding box of a found symbol, grown by half its size (the outline zxing gives for a
    symbol it could not decode is often off by a few modules); None if too small to be a code."""
    corners = (position.top_left, position.top_right, position.bottom_right, position.bottom_left)
    xs, ys = [point.x for point in corners], [point.y for point in corners]
    size = max(max(xs) - min(xs), max(ys) - min(ys))
    if size < MIN_CODE_PX:
        return None
    margin = size // 2
    height, width = shape[0], shape[1]
    left, top = max(0, min(xs) - margin), max(0, min(ys) - margin)
    right, bottom = min(width, max(xs) + margin), min(height, max(ys) + margin)
    return Region(left, top, max(1, right - left), max(1, bottom - top))


# ECI assignment number -> Python codec (AIM ECI specification; 899 is "binary", no charset).
_ECI_CODECS = {
    0: "cp437",
    1: "iso-8859-1",
    2: "cp437",
    **{eci: f"iso-8859-{eci - 2}" for eci in range(3, 14)},  # 3..13: ISO-8859-1..11
    **{eci: f"iso-8859-{eci - 2}" for eci in range(15, 19)},  # 15..18: ISO-8859-13..16
    20: "shift_jis",
    21: "cp1250",
    22: "cp1251",
    23: "cp1252",
    24: "cp1256",
    25: "utf-16-be",
    26: "utf-8",
    27: "ascii",
    28: "big5",
    29: "gb18030",
    30: "euc_kr",
    31: "gbk",
    32: "gb18030",
    33: "utf-16-le",
    34: "utf-32-be",
    35: "utf-32-le",
    170: "ascii",
}
_ECI_SYMBOLOGY_IDS = (b"]Q2", b"]Q4", b"]Q6")  # QR with ECI (alone, or with FNC1 1st/2nd)
_ECI_ESCAPE = re.compile(rb"\\(\\|[0-9]{6})")  # a doubled backslash, or an ECI designator


def _eci_charset(hex_eci: str) -> str | None:
    """The charset of a code whose whole data is under one ECI, from zxing's HexECI text."""
    try:
        content = bytes.fromhex(hex_eci)
    except ValueError:
        return None
    if content[:3] not in _ECI_SYMBOLOGY_IDS:
        return None
    body = content[3:]
    designators = [m for m in _ECI_ESCAPE.finditer(body) if m.group(1) != b"\\"]
    numbers = {int(m.group(1)) for m in designators}
    # Data before the first ECI, or two ECIs in one code: no single charset fits all the bytes.
    if not designators or designators[0].start() != 0 or len(numbers) != 1:
        return None
    return _ECI_CODECS.get(numbers.pop())
