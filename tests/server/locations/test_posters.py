"""A location's poster (issue 18): its QR, read back by the gates' own decoder, is exactly the
check-in URL; the SVG poster is well-formed XML, A4 or A5, and a name holding markup is text; the
PDF poster is an A4 or A5 page whose text holds the Vietnamese words and whose QR, printed and
scanned, is the check-in URL."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.decode.backends import make_decoder
from protocol.verdicts import Direction
from server.locations.posters import (
    HEADLINE_EN,
    HEADLINE_VI,
    INSTRUCTIONS_EN,
    INSTRUCTIONS_VI,
    PosterError,
    poster_pdf,
    poster_svg,
    qr_path,
    qr_png,
)
from server.locations.urls import check_public_url, checkin_url
from tests.support.pdf import page_mm, pdf_qr, pdf_text

SVG = "{http://www.w3.org/2000/svg}"
TOKEN = "loc-abcdefghij.AAAAAAAAAAAAAAAAAAAAAA"


@dataclass(frozen=True)
class Place:
    name: str
    site_id: str = "hq"
    direction: Direction = Direction.IN
    token: str = TOKEN


def _decoded(png: bytes) -> list[str]:
    grey = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert grey is not None
    return [code.text for code in make_decoder("auto").decode(grey)]


@pytest.mark.parametrize(
    "public_url",
    ["https://checkin.example.vn", "https://checkin.example.vn/", "http://127.0.0.1:8080/gs/"],
)
def test_the_qr_reads_back_as_exactly_the_check_in_url(public_url: str) -> None:
    url = checkin_url(public_url, Place("Sảnh"))
    assert url == public_url.rstrip("/") + "/c/" + TOKEN
    png = qr_png(url)
    assert png.startswith(b"\x89PNG")
    assert _decoded(png) == [url]


def test_the_poster_s_qr_path_reads_back_too() -> None:
    """The QR as the SVG draws it (one path, a unit a module), rasterised here by hand."""
    url = checkin_url("https://checkin.example.vn", Place("Sảnh"))
    path, modules = qr_path(url)
    image = np.full((modules * 8, modules * 8), 255, np.uint8)
    for step in path.split("z")[:-1]:
        x, rest = step[1:].split(",")
        y, _, width = rest.partition("h")
        run = int(width.split("v")[0])
        image[int(y) * 8 : (int(y) + 1) * 8, int(x) * 8 : (int(x) + run) * 8] = 0
    assert _decoded(cv2.imencode(".png", image)[1].tobytes()) == [url]


@pytest.mark.parametrize(("size", "width"), [("a4", "210mm"), ("a5", "148mm")])
def test_the_poster_is_svg_with_the_name_the_words_and_the_url(size: str, width: str) -> None:
    place = Place("Quầy lễ tân tầng 1", direction=Direction.OUT)
    url = checkin_url("https://checkin.example.vn", place)
    svg = poster_svg(place, url, size)  # type: ignore[arg-type]
    root = ET.fromstring(svg.encode("utf-8"))
    assert root.tag == f"{SVG}svg" and root.get("width") == width
    texts = [element.text for element in root.iter(f"{SVG}text")]
    assert "Quầy lễ tân tầng 1" in texts and HEADLINE_VI in texts and HEADLINE_EN in texts
    assert url in texts and any("Lối ra" in (text or "") for text in texts)
    assert any("Quét mã" in (text or "") for text in texts[4:])  # the instructions


def test_a_name_holding_markup_is_text_on_the_poster() -> None:
    place = Place('<script>alert(1)</script>"&<tspan>x</tspan>', site_id="<b>hq</b>")
    svg = poster_svg(place, checkin_url("https://x.example", place))
    root = ET.fromstring(svg.encode("utf-8"))
    assert "<script>" not in svg and "<tspan>" not in svg and "<b>" not in svg
    assert not list(root.iter(f"{SVG}script")) and not list(root.iter(f"{SVG}tspan"))
    assert root.find(f"{SVG}title").text == place.name  # type: ignore[union-attr]
    assert any("<b>hq</b>" in (e.text or "") for e in root.iter(f"{SVG}text"))


def test_a_long_name_is_wrapped_not_cut() -> None:
    name = "Chợ Bến Thành, khu hàng khô, sạp số 1203 đến 1210, cửa phía đường Lê Lợi"
    root = ET.fromstring(poster_svg(Place(name), "https://x.example/c/t").encode("utf-8"))
    bold = [e.text for e in root.iter(f"{SVG}text") if e.get("font-weight") == "bold"]
    assert " ".join(bold[:-1]) == name


@pytest.mark.parametrize(
    "bad",
    [
        "ftp://x.example",
        "checkin.example.vn",
        "https://",
        "https://x.example/?a=1",
        "https://x.example/#top",
        "https://user:pw@x.example",
        "https://x.example:port",
        "https://x .example",
        "",
    ],
)
def test_a_public_url_a_phone_could_not_open_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        check_public_url(bad)


def test_a_public_url_with_a_port_and_a_path_is_taken() -> None:
    for good in ("https://checkin.example.vn", "http://10.0.0.5:8080/gatescan/"):
        assert check_public_url(good) == good


@pytest.mark.parametrize(("size", "page"), [("a4", (210, 297)), ("a5", (148, 210))])
def test_the_pdf_poster_is_the_page_with_the_words_and_its_qr_reads_back(
    size: str, page: tuple[int, int], tmp_path: Path
) -> None:
    """Printed and scanned: the page rendered by pdftoppm, its QR read by the gates' decoder."""
    place = Place("Quầy lễ tân tầng 1 · Đặng Hữu Phước", direction=Direction.OUT)
    url = checkin_url("https://checkin.example.vn", place)
    pdf = poster_pdf(place, url, size)  # type: ignore[arg-type]
    assert pdf.startswith(b"%PDF-") and page_mm(pdf) == [page]
    text = pdf_text(pdf)
    for words in (HEADLINE_VI, HEADLINE_EN, url, "Lối ra", *INSTRUCTIONS_VI, *INSTRUCTIONS_EN):
        assert words in text, words
    assert "Quầy lễ tân tầng 1 · Đặng Hữu Phước" in " ".join(text.split())
    assert pdf_qr(pdf, tmp_path) == [url]


def test_a_name_holding_markup_is_text_on_the_pdf_poster() -> None:
    place = Place('<script>alert(1)</script>"&<b>Sảnh</b>', site_id="<b>hq</b>")
    text = "".join(pdf_text(poster_pdf(place, checkin_url("https://x.example", place))).split())
    assert place.name in text and "<b>hq</b>" in text  # a long word wraps: compared unspaced


def test_a_long_name_is_wrapped_on_the_pdf_poster_not_cut() -> None:
    name = "Chợ Bến Thành, khu hàng khô, sạp số 1203 đến 1210, cửa phía đường Lê Lợi"
    text = pdf_text(poster_pdf(Place(name), "https://x.example/c/t"))
    assert name in " ".join(text.split())


def test_without_the_dejavu_fonts_the_pdf_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(PosterError, match="fonts-dejavu-core"):
        poster_pdf(Place("Sảnh"), "https://x.example/c/t", font_dir=tmp_path)
