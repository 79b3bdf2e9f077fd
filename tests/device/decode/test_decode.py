"""The decoders return every QR code's exact bytes, with real libzbar and real zxing-cpp."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyzbar.pyzbar import ZBarSymbol
from pyzbar.pyzbar import decode as plain_pyzbar_decode

from device.decode.backends import make_decoder
from device.decode.base import DecodedCode, Decoder, DecoderError, utf8_text
from device.decode.preprocess import half_size
from device.decode.zbar import PyzbarDecoder
from gatescan.testing.samples import blank_frame, cccd_payload, draw_code, render_code

SMALL = (360, 360)  # small frames keep the suite fast; zbar's cost grows with the pixel count

FULL_CCCD = cccd_payload(
    "001190012345",
    "Nguyễn Thị Thu Uyên",
    "14021990",
    "Nữ",
    "Số 12 Ngõ 34 Phố Huế, Hai Bà Trưng, Hà Nội",
    "10052021",
    old_id="013456789",
)
# About 1,000 bytes of mixed Vietnamese text: a version-20-odd code with many blocks.
LONG_TEXT = ("Đăng ký vào cổng số 3, khu B. " * 40).encode("utf-8")[:1000]

EXACT_PAYLOADS = {
    "short-uyen": "Uyên".encode(),
    "one-letter-d": "Đ".encode(),
    "ly-on": "Lý Ơn".encode(),
    "cccd-7-field": FULL_CCCD,
    "long-1000-bytes": LONG_TEXT,
    "latin-1-cafe": b"caf\xe9",
    "invalid-utf8": b"\xff\xfe\xc3(\x80abc",
    "binary-with-nul": b"\x00\x01\x02\x00\xfe\xff\x81\x9f",
}


@pytest.fixture(scope="module", params=["pyzbar", "zxing", "ensemble"])
def decoder(request: pytest.FixtureRequest) -> Iterator[Decoder]:
    # One decoder per backend for the whole module: reusing the zbar scanner is the real use.
    yield make_decoder(request.param)


@pytest.fixture(scope="module")
def zbar() -> Iterator[PyzbarDecoder]:
    decoder = PyzbarDecoder()
    yield decoder
    decoder.close()


def frame_size_for(data: bytes) -> tuple[int, int]:
    return (480, 480) if len(data) > 300 else SMALL


@pytest.mark.parametrize("data", EXACT_PAYLOADS.values(), ids=EXACT_PAYLOADS.keys())
def test_decoder_returns_the_exact_bytes_of_the_code(decoder: Decoder, data: bytes) -> None:
    module_px = 3 if len(data) > 300 else 6
    frame = render_code(data, frame_size=frame_size_for(data), module_px=module_px, noise=4)
    assert decoder.decode(frame) == [DecodedCode(data)]


def test_plain_pyzbar_garbles_short_vietnamese_which_is_why_binary_mode_is_used(
    zbar: PyzbarDecoder,
) -> None:
    data = "Uyên".encode()
    frame = render_code(data, frame_size=SMALL)
    guessed = plain_pyzbar_decode(frame, symbols=[ZBarSymbol.QRCODE])[0].data
    assert guessed != data  # zbar took the UTF-8 bytes for Shift-JIS and re-encoded them
    assert guessed.decode("utf-8") != "Uyên"
    assert zbar.decode(frame)[0].text == "Uyên"


@settings(
    max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=st.binary(min_size=1, max_size=120))
def test_any_bytes_come_back_unchanged_from_every_backend(data: bytes) -> None:
    frame = render_code(data, frame_size=(300, 300), module_px=4)
    for backend in ("pyzbar", "zxing", "ensemble"):
        assert make_decoder(backend).decode(frame) == [DecodedCode(data)], backend


def test_text_prefers_utf8_then_falls_back_to_latin1_never_shift_jis() -> None:
    assert DecodedCode("Nguyễn".encode()).text == "Nguyễn"
    assert DecodedCode(b"caf\xe9").text == "café"
    shift_jis_nihon = "日本".encode("shift_jis")
    assert DecodedCode(shift_jis_nihon).text == shift_jis_nihon.decode("iso-8859-1")


def test_text_follows_the_eci_charset_and_survives_a_wrong_one() -> None:
    assert DecodedCode("Привет".encode("cp1251"), charset="cp1251").text == "Привет"
    assert DecodedCode("日本".encode("shift_jis"), charset="shift_jis").text == "日本"
    assert DecodedCode(b"caf\xe9", charset="utf-8").text == "café"  # ECI lied: usual rule
    assert DecodedCode(b"abc", charset="no-such-codec").text == "abc"


def test_utf8_text_is_given_only_for_valid_utf8() -> None:
    assert utf8_text("Đức".encode()) == "Đức"
    assert utf8_text(b"caf\xe9") is None
    assert utf8_text(b"") == ""


def test_zxing_reports_the_charset_an_eci_header_names() -> None:
    data = "Привет".encode("cp1251")
    frame = render_code(data, frame_size=SMALL, eci="cp1251")
    assert make_decoder("zxing").decode(frame) == [DecodedCode(data, charset="cp1251")]


def test_zbar_gives_right_text_for_a_latin1_eci_code_though_not_the_same_bytes(
    zbar: PyzbarDecoder,
) -> None:
    # zbar converts data under an ECI it knows (ISO-8859-x, Shift-JIS, UTF-8) to UTF-8 even in
    # binary mode; the text is right, the bytes are the UTF-8 form. See device/decode/zbar.py.
    frame = render_code(b"caf\xe9", frame_size=SMALL, eci="latin-1")
    (code,) = zbar.decode(frame)
    assert code.text == "café"
    assert code.data == "café".encode()


def test_frames_without_a_code_give_no_codes(decoder: Decoder) -> None:
    assert decoder.decode(blank_frame(SMALL, noise=12)) == []
    assert decoder.decode(np.zeros((0, 0), dtype=np.uint8)) == []
    assert decoder.decode(np.zeros((1, 1), dtype=np.uint8)) == []
    assert decoder.decode(np.zeros((1, 2000), dtype=np.uint8)) == []


def test_y_plane_view_of_a_yuv420_buffer_is_decoded(decoder: Decoder) -> None:
    width, height, stride = 320, 240, 384  # picamera2 pads rows to a stride
    yuv420 = np.zeros((height * 3 // 2, stride), dtype=np.uint8)
    yuv420[:height, :width] = render_code(FULL_CCCD, frame_size=(width, height), module_px=2)
    y_plane = yuv420[:height, :width]
    assert not y_plane.flags.c_contiguous
    assert decoder.decode(y_plane) == [DecodedCode(FULL_CCCD)]


def test_upside_down_view_with_negative_strides_is_decoded(decoder: Decoder) -> None:
    frame = render_code("Lý Ơn".encode(), frame_size=SMALL)
    assert decoder.decode(frame[::-1, ::-1]) == [DecodedCode("Lý Ơn".encode())]


def test_two_codes_in_one_frame_are_both_read(decoder: Decoder) -> None:
    first, second = "Trần Văn Đức".encode(), b"https://example.vn/pass/42"
    frame = blank_frame((640, 300))
    frame = draw_code(frame, first, module_px=5, center=(160, 150))
    frame = draw_code(frame, second, module_px=5, center=(480, 150))
    assert sorted(code.data for code in decoder.decode(frame)) == sorted([first, second])


def test_integer_frames_in_range_are_converted(decoder: Decoder) -> None:
    frame: Any = render_code(b"caf\xe9", frame_size=SMALL).astype(np.int32)  # not a Frame
    assert decoder.decode(frame) == [DecodedCode(b"caf\xe9")]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((10, 10, 3), dtype=np.uint8), "2-D grey frame"),
        (np.zeros((10, 10), dtype=np.float32), "uint8"),
        (np.full((10, 10), 300, dtype=np.int32), "uint8"),
        ([[0, 255], [255, 0]], "numpy array"),
    ],
    ids=["colour", "float", "out-of-range", "list"],
)
def test_frames_that_are_not_grey_images_are_refused_clearly(
    decoder: Decoder, frame: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        decoder.decode(frame)  # type: ignore[arg-type]


def test_unknown_backend_is_refused_with_the_valid_names() -> None:
    with pytest.raises(ValueError, match="auto, ensemble, pyzbar, zxing"):
        make_decoder("quirc")


def test_auto_picks_the_ensemble_when_zxing_is_installed() -> None:
    assert make_decoder("auto").name == "ensemble"


def test_pyzbar_reads_two_pixel_modules_of_a_large_frame_at_full_size(zbar: PyzbarDecoder) -> None:
    # At half size the modules are one pixel: the half-size pass misses, the region pass reads.
    frame = render_code(FULL_CCCD, frame_size=(1280, 720), module_px=2, noise=6, seed=5)
    assert zbar.read(half_size(frame)) == []
    assert zbar.decode(frame) == [DecodedCode(FULL_CCCD)]


@pytest.mark.parametrize("module_px", [3, 5, 8])
def test_pyzbar_half_size_first_reads_what_a_full_size_read_reads(
    zbar: PyzbarDecoder, module_px: int
) -> None:
    frame = render_code(FULL_CCCD, frame_size=(1280, 720), module_px=module_px, noise=6, seed=1)
    whole = PyzbarDecoder(half_size_first=False).decode(frame)
    assert whole == [DecodedCode(FULL_CCCD)]
    assert zbar.decode(frame) == whole


def test_pyzbar_on_an_empty_large_frame_finds_nothing_at_either_size(zbar: PyzbarDecoder) -> None:
    assert zbar.decode(blank_frame((1280, 720), noise=8, background=150)) == []


def test_a_closed_pyzbar_decoder_refuses_to_decode() -> None:
    decoder = PyzbarDecoder()
    decoder.close()
    with pytest.raises(DecoderError, match="closed"):
        decoder.decode(blank_frame(SMALL))
