"""QR codes through libzbar (pyzbar's ctypes wrapper), with exact bytes.

QR only, in zbar's binary mode (``ZBAR_CFG_BINARY``, which pyzbar's `ZBarConfig` lacks), so zbar
skips its text-encoding guess and hands back the code's bytes. zbar does not report ECI, so
`charset` is always None. One exception, read from zbar's qrdectxt.c and checked in the tests:
binary mode only switches off the guess; data under an ECI that zbar knows (ISO-8859-x,
Shift-JIS, UTF-8) is still converted to UTF-8, so for such codes zbar gives the right text as
UTF-8 bytes rather than the bytes in the symbol (zxing gives those). Codes without ECI, which is
what ID cards and phone apps write, come back exactly.

zbar's cost grows with pixels and with noise (about 35 ms for a noisy 1280x720 frame on a
desktop core), so by default frames of 640x480 and up are read at half size first (big modules
read there); when that finds nothing, only the regions that look like a code (where small
modules are) are read again at full size. bench/decode_bench.py measures both ways on the same
frames: the same codes read (100 of 100; the full-size read 99), at about a quarter of the cost
(8 vs 35 ms per empty frame). On the hard gate frames the half-size pass even reads more, as
halving averages the noise away.
"""

from __future__ import annotations

import ctypes
import importlib
import threading
import weakref
from types import ModuleType
from typing import Any

import numpy as np

from device.decode.base import DecodedCode, DecoderError, DecoderUnavailable, Frame, grey_pixels
from device.decode.base import unique as unique_codes
from device.decode.preprocess import half_size, likely_code_regions, noise_level

# zbar 0.23's zbar_config_e: ENABLE=0, ADD_CHECK=1, EMIT_CHECK=2, ASCII=3, BINARY=4.
_ZBAR_CFG_ENABLE = 0
_ZBAR_CFG_BINARY = 4
_ZBAR_NONE = 0  # "every symbology" when passed to set_config
_ZBAR_QRCODE = 64
_FOURCC_Y800 = int.from_bytes(b"Y800", "little")  # 8-bit grey, one byte per pixel
# Frames whose shorter side is at least this are read at half size first (640x480 and up):
# smaller ones are cheap to read whole.
HALF_SIZE_FROM = 480


def _load_zbar() -> ModuleType:
    try:
        return importlib.import_module("pyzbar.wrapper")
    except ImportError as exc:  # pyzbar missing, or pyzbar present but libzbar not found
        raise DecoderUnavailable(
            "the pyzbar decoder needs the pyzbar package (pip install 'gatescan[device]') "
            f"and the zbar library (apt install libzbar0): {exc}"
        ) from exc


class PyzbarDecoder:
    """QR codes through libzbar, with exact bytes. One per thread: the scanner is reused.

    `half_size_first` (default True): read a large frame at half size first and, when that finds
    nothing, read again at full size only the regions that look like a code. False reads every
    frame once at full size (zbar as it comes).
    """

    name = "pyzbar"

    def __init__(self, *, half_size_first: bool = True) -> None:
        self._zbar: Any = _load_zbar()
        scanner = self._zbar.zbar_image_scanner_create()
        if not scanner:
            raise DecoderError("zbar could not create an image scanner")
        self._scanner = scanner
        self._release = weakref.finalize(self, self._zbar.zbar_image_scanner_destroy, scanner)
        self._lock = threading.Lock()
        self._half_size_first = half_size_first
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
        if not self._half_size_first or min(grey.shape) < HALF_SIZE_FROM:
            return self.read(grey)
        found = self.read(half_size(grey))
        if found:
            return found
        # Small modules vanish at half size: look again, at full size, where a code is likely.
        regions = likely_code_regions(grey, noise_level(grey))
        return unique_codes([code for region in regions for code in self.read(region.crop(grey))])

    def read(self, grey: Frame) -> list[DecodedCode]:
        """One zbar pass over a 2-D uint8 image as it is (no rescaling)."""
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
