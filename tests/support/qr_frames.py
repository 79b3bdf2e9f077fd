"""A code as segno makes it at error correction M (not boosted), drawn into a camera frame: what
the pass tests read back through the gate's decoders."""

from __future__ import annotations

import cv2
import numpy as np
import segno

from device.decode.base import Frame


def ecc_m_frame(code: bytes, module_px: int = 6) -> tuple[Frame, int]:
    """(a 1280x720 grey frame with the QR of `code` in it, the QR's version)."""
    qr = segno.make(code, error="m", boost_error=False)
    assert qr.error == "M"
    modules = np.array(qr.matrix, dtype=np.uint8)
    image = np.where(modules > 0, 0, 255).astype(np.uint8)
    image = cv2.resize(image, None, fx=module_px, fy=module_px, interpolation=cv2.INTER_NEAREST)
    frame = np.full((720, 1280), 255, np.uint8)
    frame[200 : 200 + image.shape[0], 300 : 300 + image.shape[1]] = image
    return frame, int(qr.version)
