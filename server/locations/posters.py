"""A location's poster (issue 18): the QR of its check-in URL as a PNG, and the poster to print,
A4 or A5, as SVG (no dependency: a browser or Inkscape prints it; the QR is drawn as one path, so
it stays sharp at any size) or as PDF (fpdf2, with DejaVu Sans embedded for the Vietnamese marks;
the QR drawn as filled squares, vector too).

    qr_png(url)                                  # PNG bytes: error correction Q, a quiet zone
    poster_svg(location, url, size="a4")         # the poster, SVG text
    poster_pdf(location, url, size="a4")         # the same poster, PDF bytes

The poster holds the location's name in big type, its site, the direction, "Quét mã để khai báo
ra vào / Scan to check in", short instructions in Vietnamese and English, the QR (120 mm across
on A4, 85 mm on A5: readable from a metre and more) and the URL in small type under it, for a
phone that cannot scan. Every text of the location is escaped: a name holding markup is shown
as its characters, never as markup.

The PDF needs fpdf2 (the server extra) and the TrueType DejaVu fonts of Debian's
`fonts-dejavu-core` (/usr/share/fonts/truetype/dejavu/): a PDF with Vietnamese text must embed a
font holding its glyphs. Without them `poster_pdf` raises `PosterError` naming what to install.
Both are imported or opened where the PDF is drawn, never at import: `gatescan --help` on a gate
(no server extra) reads POSTER_SIZES from this module.
"""

from __future__ import annotations

import io
import os
import textwrap
from pathlib import Path
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
# Where Debian's fonts-dejavu-core puts its fonts; GATESCAN_FONT_DIR points elsewhere.
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_PACKAGE = "fonts-dejavu-core"
_FONT_FILES = {
    "sans": "DejaVuSans.ttf",
    "sans-bold": "DejaVuSans-Bold.ttf",
    "mono": "DejaVuSansMono.ttf",
}


class PosterError(RuntimeError):
    """The PDF poster cannot be made here: a missing library or font (the message says which)."""


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


def qr_modules(url: str) -> tuple[list[tuple[int, int, int]], int]:
    """The QR's dark modules as runs (x, y, length) along its rows, quiet zone (4) included in
    the coordinates, and its width in modules with that quiet zone."""
    qr = _qr(url)
    border = 4
    rows = list(qr.matrix)
    runs: list[tuple[int, int, int]] = []
    for y, row in enumerate(rows):
        x = 0
        while x < len(row):
            if row[x] & 1:
                start = x
                while x < len(row) and row[x] & 1:
                    x += 1
                runs.append((start + border, y + border, x - start))
            else:
                x += 1
    return runs, len(rows) + 2 * border


def qr_path(url: str) -> tuple[str, int]:
    """The QR's dark modules as one SVG path (a unit a module), and its width in modules with
    the quiet zone (4 modules each side)."""
    runs, modules = qr_modules(url)
    return "".join(f"M{x},{y}h{n}v1h-{n}z" for x, y, n in runs), modules


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


def font_files(font_dir: Path | None = None) -> dict[str, Path]:
    """The DejaVu fonts the PDF embeds, by role; `PosterError` naming the package when missing."""
    if font_dir is None:
        font_dir = Path(os.environ.get("GATESCAN_FONT_DIR") or FONT_DIR)
    found = {role: font_dir / name for role, name in _FONT_FILES.items()}
    missing = sorted(path.name for path in found.values() if not path.is_file())
    if missing:
        raise PosterError(
            f"a PDF poster needs the DejaVu fonts ({', '.join(missing)} not in {font_dir}):"
            f" install Debian's {FONT_PACKAGE} (apt install {FONT_PACKAGE}), or print the SVG"
        )
    return found


_PT_PER_MM = 72 / 25.4


def poster_pdf(
    location: PosterLocation, url: str, size: PosterSize = "a4", font_dir: Path | None = None
) -> bytes:
    """The poster of `location` whose QR holds `url`, as a PDF of one `size` page: the layout of
    `poster_svg` (drawn on A4's 210 × 297 and scaled for A5), DejaVu Sans embedded (subset)."""
    if size not in _PAGE_MM:
        raise ValueError(f"a poster is {' or '.join(POSTER_SIZES)}, not {size!r}")
    fonts = font_files(font_dir)
    try:
        from fpdf import FPDF
    except ImportError:
        raise PosterError(
            "a PDF poster needs fpdf2 (the server extra: pip install 'gatescan[server]'),"
            " or print the SVG"
        ) from None
    width, height = _PAGE_MM[size]
    k = width / 210  # A4's layout scaled to the page (A5 is A4's shape)
    pdf = FPDF(orientation="portrait", unit="mm", format=(width, height))
    pdf.set_auto_page_break(False)
    pdf.set_margin(0)
    pdf.set_title(location.name)
    pdf.set_creator("gatescan")
    pdf.add_font("DejaVu", "", str(fonts["sans"]))
    pdf.add_font("DejaVu", "B", str(fonts["sans-bold"]))
    pdf.add_font("DejaVuMono", "", str(fonts["mono"]))
    pdf.add_page()

    def text(y: float, em: float, content: str, style: str = "", family: str = "DejaVu",
             grey: int = 0) -> None:  # fmt: skip
        # The SVG's text: centred on x = 105 at baseline y, `em` mm tall (A4's units).
        pdf.set_font(family, style, em * k * _PT_PER_MM)
        pdf.set_text_color(grey)
        pdf.text(105 * k - pdf.get_string_width(content) / 2, y * k, content)

    pdf.set_draw_color(0)
    pdf.set_line_width(0.8 * k)
    pdf.rect(6 * k, 6 * k, 198 * k, 285 * k)
    text(18, 5, f"{location.site_id} · {_DIRECTION_WORDS[location.direction]}")
    lines, name_size = _name_lines(location.name)
    # The wrap guesses a letter's width; here it is measured: a line wider than the frame's
    # inside (186 mm) makes the type smaller.
    pdf.set_font("DejaVu", "B", name_size * k * _PT_PER_MM)
    widest = max(pdf.get_string_width(line) for line in lines) / k
    name_size *= min(1.0, 186 / widest) if widest else 1.0
    y = 24 + name_size
    for line in lines:
        text(y, name_size, line, "B")
        y += name_size * 1.15
    headline_y = max(y + 4, 72.0)
    text(headline_y, 8, HEADLINE_VI, "B")
    text(headline_y + 8, 6, HEADLINE_EN)
    runs, modules = qr_modules(url)
    module = _QR_MM * k / modules
    left = (105 - _QR_MM / 2) * k
    top = max(_QR_TOP, headline_y + 12)
    pdf.set_fill_color(0)
    for x, row, length in runs:
        pdf.rect(left + x * module, top * k + row * module, length * module, module, style="F")
    url_y = top + _QR_MM + 6
    text(url_y, 3.6, url, family="DejaVuMono")
    y = url_y + 11
    for line in INSTRUCTIONS_VI:
        text(y, 4.6, line)
        y += 6.2
    y += 2
    for line in INSTRUCTIONS_EN:
        text(y, 4.0, line, grey=0x33)
        y += 5.6
    return bytes(pdf.output())


def poster_file_name(
    location_id: str, kind: Literal["png", "svg", "pdf"], size: PosterSize = "a4"
) -> str:
    """A download's file name: the id only (a name may hold anything)."""
    return f"{location_id}-qr.png" if kind == "png" else f"{location_id}-poster-{size}.{kind}"
