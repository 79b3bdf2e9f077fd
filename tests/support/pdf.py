"""A PDF poster read back (issue 18): its page size from the MediaBox, its text by poppler's
pdftotext, and its QR as a visitor's phone would see it: the page rendered by pdftoppm and the
picture decoded by the gates' own decoder (`make_decoder("auto")`) as a gray frame. poppler-utils
is Debian's (deploy/dev/bootstrap.sh installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np

from device.decode.backends import make_decoder

MM_PER_PT = 25.4 / 72
_MEDIA_BOX = re.compile(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]")


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} missing: apt install poppler-utils (deploy/dev/bootstrap.sh)"
    return found


def page_mm(pdf: bytes) -> list[tuple[int, int]]:
    """Each page's size in whole millimetres, from its MediaBox."""
    return [
        (round(float(w) * MM_PER_PT), round(float(h) * MM_PER_PT))
        for w, h in _MEDIA_BOX.findall(pdf)
    ]


def pdf_text(pdf: bytes) -> str:
    done = subprocess.run(
        [_tool("pdftotext"), "-enc", "UTF-8", "-", "-"], input=pdf, capture_output=True,
        check=True, timeout=60,
    )  # fmt: skip
    return done.stdout.decode("utf-8")


def pdf_qr(pdf: bytes, tmp: Path, dpi: int = 100) -> list[str]:
    """The QR codes read on the first page, rendered at `dpi` in gray."""
    source = tmp / "poster.pdf"
    source.write_bytes(pdf)
    subprocess.run(
        [_tool("pdftoppm"), "-r", str(dpi), "-gray", "-png", "-singlefile", str(source),
         str(tmp / "page")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    grey = cv2.imread(str(tmp / "page.png"), cv2.IMREAD_GRAYSCALE)
    assert grey is not None and grey.dtype == np.uint8
    return [code.text for code in make_decoder("auto").decode(grey)]
