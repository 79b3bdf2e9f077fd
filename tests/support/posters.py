"""A location's poster as a visitor meets it (issue 18): made by the real `gatescan location add`
against a site's database, printed (the SVG rendered to pixels by chromium), and scanned (the
picture decoded by the gates' own decoder, `make_decoder("auto")`, as a gray frame).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from playwright.sync_api import Browser, ViewportSize

from device.decode.backends import make_decoder
from tests.support.browser_site import Site
from tests.support.cli import run_gatescan
from tests.support.web import db_option

# A4 at chromium's 96 px per inch: 794 x 1123 px, the QR's 120 mm about 454 px across.
A4_PX: ViewportSize = {"width": 794, "height": 1123}


@dataclass(frozen=True)
class Poster:
    location_id: str
    printed_url: str  # what `location add` printed
    svg: Path


def make_poster(site: Site, folder: Path, name: str, site_id: str = "hq") -> Poster:
    """`gatescan location add NAME --site S --qr .. --poster ..` on the site's database, with the
    site's own address as the public one (this machine is the visitor's network)."""
    folder.mkdir(parents=True, exist_ok=True)
    svg, png = folder / "poster.svg", folder / "poster-qr.png"
    result = run_gatescan(
        [
            "location", "add", name, "--site", site_id, "--db", db_option(site.db),
            "--public-url", site.url, "--qr", str(png), "--poster", str(svg),
        ]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = re.search(r"location (loc-\S+) ", result.stdout)
    url = re.search(r"check-in URL: (\S+)", result.stdout)
    assert found is not None and url is not None, result.stdout
    return Poster(found[1], url[1], svg)


def scan_poster(browser: Browser, svg: Path) -> str:
    """The URL a phone's camera reads off the printed poster: the SVG rendered by chromium, the
    screenshot decoded with the project's decoder. Exactly one code on the poster."""
    context = browser.new_context(viewport=A4_PX)
    try:
        page = context.new_page()
        # As an image in a page: a screenshot of a bare SVG document waits forever.
        data = base64.b64encode(svg.read_bytes()).decode("ascii")
        page.set_content(
            '<body style="margin:0;background:#fff">'
            f'<img id="poster" width="{A4_PX["width"]}" src="data:image/svg+xml;base64,{data}">'
        )
        page.wait_for_function("document.getElementById('poster').complete")
        picture = page.locator("#poster").screenshot()
    finally:
        context.close()
    gray = cv2.imdecode(np.frombuffer(picture, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert gray is not None, "chromium's screenshot is not a PNG OpenCV reads"
    codes = make_decoder("auto").decode(np.asarray(gray, dtype=np.uint8))
    assert len(codes) == 1, f"the poster should hold one readable QR, found {len(codes)}"
    return codes[0].text
