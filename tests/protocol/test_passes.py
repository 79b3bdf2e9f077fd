"""Signed passes (protocol/passes.py): the layout, the signature, the window, and the QR they
make, read back through the gate's own decoders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device.decode.backends import make_decoder
from protocol.passes import (
    CLOCK_SKEW,
    PASS_BYTES,
    PassBody,
    PassFlags,
    PassFormatError,
    looks_like_pass,
    new_pass_id,
    parse_pass,
    sign_pass,
    verify_pass,
)
from protocol.verdicts import Reason
from tests.support.qr_frames import ecc_m_frame

NOW = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
SITE_KEY = Ed25519PrivateKey.generate()
KEYS = {7: SITE_KEY.public_key()}


def a_pass(**changes: object) -> bytes:
    fields: dict[str, object] = {
        "key_id": 7,
        "pass_id": new_pass_id(),
        "valid_from": NOW - timedelta(hours=1),
        "valid_until": NOW + timedelta(days=30),
    }
    return sign_pass(PassBody(**{**fields, **changes}), SITE_KEY).to_bytes()  # type: ignore[arg-type]


def verdict(code: bytes, now: datetime = NOW) -> Reason:
    return verify_pass(parse_pass(code), KEYS, now)


def test_a_pass_is_84_bytes_and_reads_back_as_signed() -> None:
    code = a_pass()
    assert len(code) == PASS_BYTES == 84
    assert looks_like_pass(code)
    parsed = parse_pass(code)
    assert parsed.body.issued and parsed.body.key_id == 7
    assert parsed.to_bytes() == code
    assert verdict(code) is Reason.OK


def test_a_tampered_byte_anywhere_is_a_bad_signature() -> None:
    code = a_pass()
    for index in range(1, PASS_BYTES):  # byte 0 is the magic: changed, it is no pass at all
        tampered = bytearray(code)
        tampered[index] ^= 0x01
        try:
            reason = verdict(bytes(tampered))
        except PassFormatError:
            continue  # a flag or window no pass has: refused before the signature
        assert reason is Reason.BAD_SIGNATURE, index


def test_another_sites_key_or_an_unknown_key_id_is_a_bad_signature() -> None:
    foreign = sign_pass(parse_pass(a_pass()).body, Ed25519PrivateKey.generate()).to_bytes()
    assert verdict(foreign) is Reason.BAD_SIGNATURE
    assert verdict(a_pass(key_id=8)) is Reason.BAD_SIGNATURE


def test_the_window_holds_with_a_small_clock_skew_either_side() -> None:
    start, end = NOW, NOW + timedelta(hours=8)
    code = a_pass(valid_from=start, valid_until=end)
    assert verdict(code, start - CLOCK_SKEW - timedelta(minutes=1)) is Reason.NOT_YET_VALID
    assert verdict(code, start - CLOCK_SKEW + timedelta(seconds=1)) is Reason.OK
    assert verdict(code, end + CLOCK_SKEW - timedelta(seconds=1)) is Reason.OK
    assert verdict(code, end + CLOCK_SKEW) is Reason.EXPIRED


def test_a_self_check_in_pass_says_so() -> None:
    assert not parse_pass(a_pass(flags=PassFlags(0))).body.issued


@pytest.mark.parametrize(
    ("code", "why"),
    [
        (b"079193012345|123456789|Nguyen Van A|01011990|Nam|Ha Noi|01012021", "not a gatescan"),
        (bytes([0xA7]) + bytes(10), "84 bytes"),
        (bytes([0xA7, 0x80]) + bytes(82), "unknown flags"),
        (bytes([0xA7, 1, 0, 7]) + bytes(8) + (5).to_bytes(4) + (4).to_bytes(4) + bytes(64), "ends"),
        (bytes([0xA7, 1, 0, 7]) + bytes(8) + bytes(4) + b"\xff\xff\xff\xff" + bytes(64), "9999"),
    ],
)
def test_bytes_that_are_no_pass_are_refused_saying_why(code: bytes, why: str) -> None:
    with pytest.raises(PassFormatError, match=why):
        parse_pass(code)


def test_a_pass_is_a_version_5_qr_at_ecc_m_and_the_gates_decoders_return_its_bytes() -> None:
    """Binary QR data is where readers mangle bytes (a charset guessed, a byte "corrected"): each
    of the gate's decoders must hand back the exact 84 bytes."""
    decoders = {name: make_decoder(name) for name in ("ensemble", "pyzbar", "zxing")}
    for _ in range(10):
        code = a_pass()
        frame, version = ecc_m_frame(code)
        assert version == 5
        for name, decoder in decoders.items():
            assert [found.data for found in decoder.decode(frame)] == [code], name
