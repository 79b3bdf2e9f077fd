"""Frame -> the exact bytes of every QR code in it.

A gate must keep a code's bytes untouched: a Vietnamese name read as "NguyÃ…n" or as Shift-JIS
mojibake is a broken entry. Both backends here return raw bytes; turning them into text is one rule
in one place (`DecodedCode.text`):

    ECI charset if the code names one, else UTF-8 if the bytes are valid UTF-8, else ISO-8859-1.

Never Shift-JIS guessing: by the QR standard byte mode is ISO-8859-1 unless an ECI header says
otherwise, and in practice ID cards and phone apps write UTF-8 without ECI.

Backends:

- `PyzbarDecoder` (libzbar through pyzbar's ctypes wrapper): QR only, in zbar's binary mode
  (``ZBAR_CFG_BINARY``, which pyzbar's `ZBarConfig` lacks), so zbar skips its text-encoding guess
  and hands back the code's bytes. zbar does not report ECI, so `charset` is always None. One
  exception, read from zbar's qrdectxt.c and checked in the tests: binary mode only switches
  off the guess; data under an ECI that zbar knows (ISO-8859-x, Shift-JIS, UTF-8) is still
  converted to UTF-8, so for such codes zbar gives the right text as UTF-8 bytes rather than the
  bytes in the symbol (zxing gives those). Codes without ECI, which is what ID cards and phone
  apps write, come back exactly.
- `ZxingDecoder` (PyPI ``zxing-cpp``, the ``fast`` extra): QR only; faster and reads more hard
  frames. Reports the ECI charset when the whole code is under one ECI.

A decoder is not meant to be shared between threads: make one per thread. (Each holds a lock, so
sharing one is safe but serialises the threads.)
"""

from __future__ import annotations

import ctypes
import importlib
import re
import threading
import weakref
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Frame = npt.NDArray[np.uint8]

BACKENDS = ("auto", "pyzbar", "zxing")


class DecoderError(RuntimeError):
    """The decoding library failed in a way a frame cannot explain."""


class DecoderUnavailable(DecoderError, ImportError):
    """The decoding library of the chosen backend is not installed or too old."""


@dataclass(frozen=True)
class DecodedCode:
    """One QR code's exact bytes, and the charset its ECI header names (None if none or unknown)."""

    data: bytes
    charset: str | None = None

    @property
    def text(self) -> str:
        """The code as text: ECI charset if known, else UTF-8 if valid, else ISO-8859-1."""
        if self.charset is not None:
            try:
                return self.data.decode(self.charset)
            except (LookupError, UnicodeDecodeError):
                pass  # a wrong ECI header is no reason to fail: fall back to the usual rule
        as_utf8 = utf8_text(self.data)
        return as_utf8 if as_utf8 is not None else self.data.decode("iso-8859-1")


def utf8_text(data: bytes) -> str | None:
    """The bytes as text if they are valid UTF-8, else None."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class Decoder(Protocol):
    name: str

    def decode(self, frame: Frame) -> list[DecodedCode]:
        """Every QR code found in a 2-D grey frame; [] when there is none."""
        ...


def make_decoder(backend: str) -> Decoder:
    """The decoder named by the config: "pyzbar", "zxing", or "auto" (zxing if installed)."""
    if backend == "pyzbar":
        return PyzbarDecoder()
    if backend == "zxing":
        return ZxingDecoder()
    if backend == "auto":
        try:
            return ZxingDecoder()
        except DecoderUnavailable:
            return PyzbarDecoder()
    raise ValueError(f"unknown decoder backend {backend!r}; valid: {', '.join(BACKENDS)}")


def grey_pixels(frame: object) -> Frame | None:
    """Check a frame and return it as 2-D uint8, or None when it has no pixels.

    Integer frames whose values fit 0..255 are converted; colour, float and other frames are
    refused with a ValueError that says what to do, since guessing their scale could hide a bug.
    """
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"a frame must be a numpy array, not {type(frame).__name__}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim != 2:
        raise ValueError(
            f"expected a 2-D grey frame (height, width), got shape {frame.shape}; "
            "convert colour frames with cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)"
        )
    if frame.size == 0:
        return None
    if frame.dtype == np.uint8:
        return frame
    if np.issubdtype(frame.dtype, np.integer) and frame.min() >= 0 and frame.max() <= 255:
        return frame.astype(np.uint8)
    raise ValueError(f"expected a uint8 grey frame (0..255), got dtype {frame.dtype}")


# zbar 0.23's zbar_config_e: ENABLE=0, ADD_CHECK=1, EMIT_CHECK=2, ASCII=3, BINARY=4.
_ZBAR_CFG_ENABLE = 0
_ZBAR_CFG_BINARY = 4
_ZBAR_NONE = 0  # "every symbology" when passed to set_config
_ZBAR_QRCODE = 64
_FOURCC_Y800 = int.from_bytes(b"Y800", "little")  # 8-bit grey, one byte per pixel


def _load_zbar() -> ModuleType:
    try:
        return importlib.import_module("pyzbar.wrapper")
    except ImportError as exc:  # pyzbar missing, or pyzbar present but libzbar not found
        raise DecoderUnavailable(
            "the pyzbar decoder needs the pyzbar package (pip install 'gatescan[device]') "
            f"and the zbar library (apt install libzbar0): {exc}"
        ) from exc


class PyzbarDecoder:
    """QR codes through libzbar, with exact bytes. One per thread: the scanner is reused."""

    name = "pyzbar"

    def __init__(self) -> None:
        self._zbar: Any = _load_zbar()
        scanner = self._zbar.zbar_image_scanner_create()
        if not scanner:
            raise DecoderError("zbar could not create an image scanner")
        self._scanner = scanner
        self._release = weakref.finalize(self, self._zbar.zbar_image_scanner_destroy, scanner)
        self._lock = threading.Lock()
        self._configure_qr_binary()

    def _configure_qr_binary(self) -> None:
        # Only QR: the other symbologies cost 2.5x the time and a gate has no use for them.
        set_config = self._zbar.zbar_image_scanner_set_config
        set_config(self._scanner, _ZBAR_NONE, _ZBAR_CFG_ENABLE, 0)
        set_config(self._scanner, _ZBAR_QRCODE, _ZBAR_CFG_ENABLE, 1)
        # Without binary mode zbar guesses the text encoding and rewrites the bytes as UTF-8.
        if set_config(self._scanner, _ZBAR_QRCODE, _ZBAR_CFG_BINARY, 1) != 0:
            self.close()
            raise DecoderUnavailable(
                "this libzbar has no binary mode (ZBAR_CFG_BINARY, zbar >= 0.23), so it would "
                "garble UTF-8 codes; install libzbar0 >= 0.23 or use the zxing backend"
            )

    def close(self) -> None:
        """Free the zbar scanner now rather than when the decoder is garbage-collected."""
        self._release()

    def decode(self, frame: Frame) -> list[DecodedCode]:
        grey = grey_pixels(frame)
        if grey is None:
            return []
        # zbar takes one packed buffer without a row stride: a view (e.g. a Y plane) is copied.
        pixels = np.ascontiguousarray(grey)
        with self._lock:
            if not self._release.alive:
                raise DecoderError("this decoder was closed")
            return self._scan(pixels)

    def _scan(self, pixels: Frame) -> list[DecodedCode]:
        zbar = self._zbar
        image = zbar.zbar_image_create()
        if not image:
            raise DecoderError("zbar could not create an image")
        try:
            height, width = pixels.shape
            zbar.zbar_image_set_format(image, _FOURCC_Y800)
            zbar.zbar_image_set_size(image, width, height)
            # No cleanup handler: `pixels` outlives the image, which is destroyed below.
            zbar.zbar_image_set_data(image, pixels.ctypes.data, pixels.nbytes, None)
            if zbar.zbar_scan_image(self._scanner, image) < 0:
                raise DecoderError("zbar refused a Y800 image")
            return self._codes_of(image)
        finally:
            zbar.zbar_image_destroy(image)

    def _codes_of(self, image: Any) -> list[DecodedCode]:
        zbar = self._zbar
        codes = []
        symbol = zbar.zbar_image_first_symbol(image)
        while symbol:
            if symbol.contents.type == _ZBAR_QRCODE:
                length = zbar.zbar_symbol_get_data_length(symbol)
                data = ctypes.string_at(zbar.zbar_symbol_get_data(symbol), length)
                codes.append(DecodedCode(data))
            symbol = zbar.zbar_symbol_next(symbol)
        return codes


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
        self._lock = threading.Lock()

    def decode(self, frame: Frame) -> list[DecodedCode]:
        grey = grey_pixels(frame)
        if grey is None:
            return []
        if any(stride < 0 for stride in grey.strides):
            grey = np.ascontiguousarray(grey)  # zxing reads positive strides without a copy
        options: dict[str, Any] = {"formats": self._formats}
        if self._text_mode is not None:
            options["text_mode"] = self._text_mode
        with self._lock:
            results = self._zxing.read_barcodes(grey, **options)
        return [
            DecodedCode(
                bytes(result.bytes),
                _eci_charset(result.text) if self._text_mode is not None else None,
            )
            for result in results
        ]


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
