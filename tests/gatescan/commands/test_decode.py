"""`gatescan decode IMAGE...`: a JSON line per file, each code's exact bytes (real decoders)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import cv2
import numpy as np

from device.decode import backends
from gatescan.commands import decode as decode_command
from gatescan.testing.samples import blank_frame, cccd_payload, render_code

SMALL = (360, 360)
FULL_CCCD = cccd_payload(
    "001190012345",
    "Nguyễn Thị Thu Uyên",
    "14021990",
    "Nữ",
    "Số 12 Ngõ 34 Phố Huế, Hai Bà Trưng, Hà Nội",
    "10052021",
    old_id="013456789",
)


def write_png(path: Path, frame: np.ndarray) -> Path:
    ok, png = cv2.imencode(".png", frame)
    assert ok
    path.write_bytes(png.tobytes())
    return path


def test_decode_command_prints_bytes_text_and_credential_type_per_file(tmp_path: Path) -> None:
    card = write_png(
        tmp_path / "thẻ.png", render_code(FULL_CCCD, frame_size=(400, 400), module_px=3)
    )
    empty = write_png(tmp_path / "empty.png", blank_frame(SMALL))
    out = io.StringIO()
    assert decode_command.decode_images([str(card), str(empty)], "pyzbar", out) == 0
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    (code,) = first["codes"]
    assert first["file"] == str(card)
    assert base64.b64decode(code["bytes_b64"]) == FULL_CCCD
    assert code["text"] == FULL_CCCD.decode("utf-8")
    assert code["credential_type"] == "cccd"
    assert second == {"file": str(empty), "codes": []}


def test_decode_command_leaves_text_out_for_binary_codes(tmp_path: Path) -> None:
    image = write_png(tmp_path / "binary.png", render_code(b"\x00\xff\x81", frame_size=SMALL))
    out = io.StringIO()
    assert decode_command.decode_images([str(image)], "zxing", out) == 0
    (code,) = json.loads(out.getvalue())["codes"]
    assert "text" not in code
    assert code["credential_type"] == "raw"


def test_decode_command_reports_unreadable_files_and_fails_at_the_end(tmp_path: Path) -> None:
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not a picture")
    good = write_png(tmp_path / "good.png", render_code(b"ok", frame_size=SMALL))
    missing = tmp_path / "missing.jpg"
    out = io.StringIO()
    paths = [str(missing), str(not_image), str(tmp_path), str(good)]
    assert decode_command.decode_images(paths, "pyzbar", out) == decode_command.EXIT_UNREADABLE_FILE
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["file"] for line in lines] == paths
    assert "no such file" in lines[0]["error"]
    assert "not an image" in lines[1]["error"]
    assert "directory" in lines[2]["error"]
    assert base64.b64decode(lines[3]["codes"][0]["bytes_b64"]) == b"ok"


def test_decode_command_refuses_an_unknown_backend(tmp_path: Path) -> None:
    out = io.StringIO()
    assert decode_command.decode_images(["x.png"], "nope", out) == decode_command.EXIT_BAD_BACKEND
    assert "valid: auto, ensemble, pyzbar, zxing" in json.loads(out.getvalue())["error"]


def test_the_command_offers_exactly_the_backends_make_decoder_knows() -> None:
    assert sorted(decode_command.BACKENDS) == sorted(backends.BACKENDS)


def test_a_codes_text_reaches_the_terminal_with_del_c1_and_bidi_escaped() -> None:
    hostile = "Nguyễn\x7f\x1b[2J\x9b31m\u202eevil\u2066\u200f"
    out = io.StringIO()
    decode_command._emit(out, {"text": hostile})
    written = out.getvalue()
    assert not any(char in written for char in "\x7f\x1b\x9b\u202e\u2066\u200f")
    assert "Nguyễn" in written  # Vietnamese stays readable
    assert json.loads(written) == {"text": hostile}  # the same JSON, every character kept
