"""Frame -> the exact bytes of every QR code in it: the names the rest of the gate imports.

The backends live in `device.decoders` (one module each: zbar, zxing, ensemble); this module keeps
the import path `from device.decode import Decoder, DecodedCode, make_decoder, ...` stable.
"""

from __future__ import annotations

from device.decoders import *  # noqa: F403  (the package's names, under the path the gate imports)
from device.decoders import __all__ as __all__
