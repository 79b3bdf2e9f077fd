"""Frame -> the exact bytes of every QR code in it: the names the rest of the gate imports.

The backends live in `device.decoders` (one module each: zbar, zxing, ensemble); this module keeps
the import path `from device.decode import Decoder, DecodedCode, make_decoder, ...` stable.
"""

from __future__ import annotations

from device.decoders import (
    BACKENDS,
    DecodedCode,
    Decoder,
    DecoderError,
    DecoderUnavailable,
    EnsembleDecoder,
    Frame,
    PyzbarDecoder,
    ZxingDecoder,
    grey_pixels,
    make_decoder,
    utf8_text,
)

__all__ = [
    "BACKENDS",
    "DecodedCode",
    "Decoder",
    "DecoderError",
    "DecoderUnavailable",
    "EnsembleDecoder",
    "Frame",
    "PyzbarDecoder",
    "ZxingDecoder",
    "grey_pixels",
    "make_decoder",
    "utf8_text",
]
