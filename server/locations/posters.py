"""A location's poster (issue 18): the QR of its check-in URL as a PNG, and the poster to print,
A4 or A5, as SVG (no dependency: a browser or Inkscape prints it; the QR is drawn as one path, so
it stays sharp at any size).

    qr_png(url)                                  # PNG bytes: error correction Q, a quiet zone
    poster_svg(location, url, size="a4")         # the poster, SVG text

The poster holds the location's name in big type, its site, the direction, "Quét mã để khai báo
ra vào / Scan to check in", short instructions in Vietnamese and English, the QR (120 mm across
on A4, 85 mm on A5: readable from a metre and more) and the URL in small type under it, for a
phone that cannot scan. Every text of the location is escaped: a name holding markup is shown
as its characters, never as markup.

No PDF: a PDF with Vietnamese text needs a font with its glyphs embedded (fpdf2 and DejaVu Sans,
say), a dependency the server does not have; the SVG prints as well ("Print to PDF").
"""

from __future__ import annotations

import io
import textwrap
from typing import TYPE_CHECKING, Literal, Protocol
from xml.sax.saxutils import escape

from protocol.verdicts import Direction

if TYPE_CHECKING:
    from segno import QRCode

PosterSize = Literal["a4", "a5"]
POSTER_SIZES: tuple[PosterSize, ...] = ("a4", "a5")
# The page in mm; the poster is drawn on A4's and scaled for A5 (the same shape, 1:√2).
_PAGE_MM = {"a4": (210, 297), "a5": (148, 210)}
_QR_MM = 120.0  # the QR across on A4, quiet zone included
_QR_TOP = 92.0
_FONT = "'DejaVu Sans', 'Noto Sans', Arial, Helvetica, sans-serif"
_DIRECTION_WORDS = {Direction.IN: "Lối vào · Entrance", Direction.OUT: "Lối ra · Exit"}
INSTRUCTIONS_VI = (
    "1. Mở camera điện thoại hoặc ứng dụng quét mã QR.",
    "2. Quét mã để mở trang khai báo.",
    "3. Điền họ tên, số điện thoại rồi bấm Vào hoặc Ra.",
)
INSTRUCTIONS_EN = (
    "1. Open your phone's camera or a QR scanner app.",
    "2. Scan the code to open the check-in page.",
    "3. Enter your name and phone number, then tap Check in or Check out.",
)
HEADLINE_VI = "Quét mã để khai báo ra vào"
HEADLINE_EN = "Scan to check in"


class PosterLocation(Protocol):
    """What a poster shows of a location (server/locations/records.py: `Location`)."""

    @property
    def name(self) -> str: ...
    @property
    def site_id(self) -> str: ...
    @property
    def direction(self) -> Direction: ...


def _qr(url: str) -> QRCode:
    # Imported here: segno is the server's extra, and `gatescan --help` on a gate (no extras)
    # builds the location commands' parser, which reads POSTER_SIZES from this module.
    import segno

    return segno.make(url, error="q", micro=False, boost_error=False)


def qr_png(url: str, scale: int = 16) -> bytes:
    """The QR of `url` as a PNG: error correction Q (a scratched or dirty poster still reads),
    four modules of quiet zone, `scale` pixels a module (16: sharp printed 10 cm across)."""
    out = io.BytesIO()
    _qr(url).save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def qr_path(url: str) -> tuple[str, int]:
    """The QR's dark modules as one SVG path (a unit a module), and its width in modules with
    the quiet zone (4 modules each side)."""
    qr = _qr(url)
    border = 4
    rows = list(qr.matrix)
    steps: list[str] = []
    for y, row in enumerate(rows):
        x = 0
        while x < len(row):
            if row[x] & 1:
                start = x
                while x < len(row) and row[x] & 1:
                    x += 1
                steps.append(f"M{start + border},{y + border}h{x - start}v1h-{x - start}z")
            else:
                x += 1
    return "".join(steps), len(rows) + 2 * border


def _text(x: float, y: float, size: float, content: str, **attributes: str) -> str:
    extra = "".join(f' {key.replace("_", "-")}="{value}"' for key, value in attributes.items())
    return (
        f'<text x="{x:g}" y="{y:g}" font-size="{size:g}" text-anchor="middle"{extra}>'
        f"{escape(content)}</text>"
    )


def _name_lines(name: str) -> tuple[list[str], float]:
    """The name wrapped to the page, and its type size in mm: big, smaller for a long name."""
    for size in (16.0, 12.0, 9.0, 7.0):
        per_line = max(8, int(186 / (0.6 * size)))
        lines = textwrap.wrap(name, per_line, break_long_words=True) or [""]
        if len(lines) <= 2:
            return lines, size
    return textwrap.wrap(name, int(186 / (0.6 * 7.0)))[:3], 7.0


def poster_svg(location: PosterLocation, url: str, size: PosterSize = "a4") -> str:
    """The poster of `location` whose QR holds `url`, as an SVG document to print on `size`."""
    if size not in _PAGE_MM:
        raise ValueError(f"a poster is {' or '.join(POSTER_SIZES)}, not {size!r}")
    width, height = _PAGE_MM[size]
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}mm" height="{height}mm"'
        f' viewBox="0 0 210 297" font-family="{_FONT}" fill="#000">',
        f"<title>{escape(location.name)}</title>",
        '<rect width="210" height="297" fill="#fff"/>',
        '<rect x="6" y="6" width="198" height="285" fill="none" stroke="#000" stroke-width="0.8"/>',
        _text(105, 18, 5, f"{location.site_id} · {_DIRECTION_WORDS[location.direction]}"),
    ]
    lines, name_size = _name_lines(location.name)
    y = 24 + name_size
    for line in lines:
        parts.append(_text(105, y, name_size, line, font_weight="bold"))
        y += name_size * 1.15
    headline_y = max(y + 4, 72.0)
    parts.append(_text(105, headline_y, 8, HEADLINE_VI, font_weight="bold"))
    parts.append(_text(105, headline_y + 8, 6, HEADLINE_EN))
    path, modules = qr_path(url)
    scale = _QR_MM / modules
    top = max(_QR_TOP, headline_y + 12)
    parts.append(
        f'<g transform="translate({105 - _QR_MM / 2:g} {top:g}) scale({scale:.6f})">'
        f'<rect width="{modules}" height="{modules}" fill="#fff"/>'
        f'<path d="{path}" fill="#000" shape-rendering="crispEdges"/></g>'
    )
    url_y = top + _QR_MM + 6
    parts.append(_text(105, url_y, 3.6, url, font_family="'DejaVu Sans Mono', monospace"))
    y = url_y + 11
    for line in INSTRUCTIONS_VI:
        parts.append(_text(105, y, 4.6, line))
        y += 6.2
    y += 2
    for line in INSTRUCTIONS_EN:
        parts.append(_text(105, y, 4.0, line, fill="#333"))
        y += 5.6
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def poster_file_name(location_id: str, kind: Literal["png", "svg"], size: PosterSize = "a4") -> str:
    """A download's file name: the id only (a name may hold anything)."""
    return f"{location_id}-qr.png" if kind == "png" else f"{location_id}-poster-{size}.svg"
