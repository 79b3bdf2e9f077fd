"""`gatescan decode IMAGE...`: what a gate would read in a camera picture, one JSON line per file.

For technicians checking a camera's aim and focus. Each line is
``{"file": ..., "codes": [{"bytes_b64": ..., "text": ..., "credential_type": ...}]}``; ``text``
appears only when the bytes are valid UTF-8, ``charset`` only when the code names one (ECI), and
``reason`` only when the gate would refuse the code. A file that cannot be read gives
``{"file": ..., "error": ...}`` and the command ends with exit code 1; a bad backend gives 2.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from gatescan.options import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, Commands

if TYPE_CHECKING:
    from device.decode.base import DecodedCode, Decoder, Frame

EXIT_UNREADABLE_FILE = EXIT_FAILED
EXIT_BAD_BACKEND = EXIT_BAD_INPUT
BACKENDS = ("auto", "ensemble", "zxing", "pyzbar")


def add_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    decode = commands.add_parser("decode", help="decode QR codes in image files (JSON lines)")
    decode.add_argument("images", nargs="+", metavar="IMAGE")
    decode.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="decoder (default auto: the ensemble when zxing-cpp is installed, else pyzbar)",
    )
    decode.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return decode_images(args.images, args.backend, sys.stdout)


def decode_images(paths: list[str], backend: str, out: TextIO) -> int:
    """Decode each image and print one JSON line per file; the exit code for the command."""
    from device.decode.backends import make_decoder
    from device.decode.base import DecoderError

    try:
        decoder = make_decoder(backend)
    except (ValueError, DecoderError) as exc:
        _emit(out, {"error": str(exc)})
        return EXIT_BAD_BACKEND
    exit_code = EXIT_OK
    for path in paths:
        line = _decode_file(path, decoder)
        if "error" in line:
            exit_code = EXIT_UNREADABLE_FILE
        _emit(out, line)
    return exit_code


def _decode_file(path: str, decoder: Decoder) -> dict[str, Any]:
    try:
        frame = _read_grey(Path(path))
        codes = decoder.decode(frame)
    except (OSError, ValueError) as exc:
        return {"file": path, "error": str(exc)}
    return {"file": path, "codes": [_describe(code) for code in codes]}


def _read_grey(path: Path) -> Frame:
    import cv2  # the device extra; imported here so `gatescan --help` works without it
    import numpy as np

    try:
        encoded = np.fromfile(path, dtype=np.uint8)  # cv2.imread mishandles non-ASCII paths
    except FileNotFoundError as exc:
        raise OSError(f"no such file: {path}") from exc
    except IsADirectoryError as exc:
        raise OSError(f"a directory, not an image: {path}") from exc
    try:
        frame = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE) if encoded.size else None
    except cv2.error:
        frame = None  # some damaged files make OpenCV raise instead of returning None
    if frame is None:
        raise ValueError(f"not an image OpenCV can read (png, jpg, webp): {path}")
    return np.asarray(frame, dtype=np.uint8)  # IMREAD_GRAYSCALE gives uint8 already: no copy


def _describe(code: DecodedCode) -> dict[str, Any]:
    from device.decode.base import utf8_text
    from device.verdict.credentials import RefusedCode, parse_credential

    described: dict[str, Any] = {"bytes_b64": base64.b64encode(code.data).decode("ascii")}
    text = utf8_text(code.data)
    if text is not None:
        described["text"] = text
    if code.charset is not None:
        described["charset"] = code.charset
    parsed = parse_credential(code.data)
    described["credential_type"] = str(parsed.credential_type)
    if isinstance(parsed, RefusedCode):
        described["reason"] = str(parsed.reason)
    return described


# What a code's text may hold that a terminal would act on rather than show: DEL, the C1 controls
# (ESC's 8-bit forms among them) and the bidirectional formatting characters that reorder what is
# shown (Trojan Source). JSON already escapes C0 controls; these are escaped the same way.
_TERMINAL_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _emit(out: TextIO, line: dict[str, Any]) -> None:
    # ensure_ascii=False: a technician should read "Nguyễn", not "Nguy\u1ec5n".
    text = json.dumps(line, ensure_ascii=False)
    out.write(_TERMINAL_UNSAFE.sub(lambda found: f"\\u{ord(found.group()):04x}", text) + "\n")
