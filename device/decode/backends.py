"""`make_decoder`: the decoder a config names, from the backends beside this module.

- `base`: `Frame`, `DecodedCode` (bytes + ECI charset, and the one text rule), `Decoder`, errors.
- `zbar`: `PyzbarDecoder`, libzbar in binary mode (QR only), half size first on large frames.
- `zxing`: `ZxingDecoder`, zxing-cpp (the ``fast`` extra), QR models 1 and 2.
- `ensemble`: `EnsembleDecoder`, zxing-cpp on every frame, zbar and image filters only where a
  code is likely but was not read, within a per-frame budget.
- `preprocess`: the noise estimate, the code-likelihood map and the rescue filters.

`make_decoder` builds one from the config's name. A decoder is not meant to be shared between
threads: make one per thread (each holds a lock, so sharing one is safe but serialises them).
"""

from __future__ import annotations

from device.decode.base import Decoder, DecoderUnavailable
from device.decode.ensemble import EnsembleDecoder
from device.decode.zbar import PyzbarDecoder
from device.decode.zxing import ZxingDecoder

BACKENDS = ("auto", "ensemble", "pyzbar", "zxing")


def make_decoder(backend: str) -> Decoder:
    """The decoder named by the config.

    "auto" is the best one installed: the ensemble when zxing-cpp is installed (with zbar as its
    second library when that is installed too), else pyzbar.
    """
    if backend == "pyzbar":
        return PyzbarDecoder()
    if backend == "zxing":
        return ZxingDecoder()
    if backend == "ensemble":
        return EnsembleDecoder(ZxingDecoder(), _zbar_if_installed())
    if backend == "auto":
        try:
            zxing = ZxingDecoder()
        except DecoderUnavailable:
            return PyzbarDecoder()
        return EnsembleDecoder(zxing, _zbar_if_installed())
    raise ValueError(f"unknown decoder backend {backend!r}; valid: {', '.join(BACKENDS)}")


def _zbar_if_installed() -> PyzbarDecoder | None:
    try:
        return PyzbarDecoder()
    except DecoderUnavailable:
        return None
