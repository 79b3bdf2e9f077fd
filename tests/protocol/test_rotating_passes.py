"""Rotating passes (protocol/rotating_passes.py): the step code, its window, and the QR."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device.decode.backends import make_decoder
from protocol.passes import PassBody, new_pass_id, sign_pass
from protocol.rotating_passes import (
    MAX_AGE_S,
    ROTATING_PASS_BYTES,
    STEP_S,
    looks_rotating,
    pass_secret,
    rotating_code,
    split_rotating,
    step_code,
    step_of,
    verify_rotation,
)
from protocol.verdicts import Reason
from tests.support.qr_frames import ecc_m_frame

NOW = datetime(2026, 12, 6, 9, 30, 10, tzinfo=UTC)
SITE_SECRET = os.urandom(32)
KEY = Ed25519PrivateKey.generate()


def a_pass() -> bytes:
    body = PassBody(1, new_pass_id(), NOW - timedelta(hours=1), NOW + timedelta(days=1))
    return sign_pass(body, KEY).to_bytes()


def check(code: bytes, now: datetime, site_secret: bytes = SITE_SECRET) -> Reason:
    pass_bytes, tail = split_rotating(code)
    return verify_rotation(tail, pass_secret(site_secret, pass_bytes[4:12]), now)


def test_the_code_is_the_pass_then_the_step_and_its_hmac() -> None:
    pass_bytes = a_pass()
    secret = pass_secret(SITE_SECRET, pass_bytes[4:12])
    code = rotating_code(pass_bytes, secret, NOW)
    assert len(code) == ROTATING_PASS_BYTES == 96 and looks_rotating(code)
    head, tail = split_rotating(code)
    assert head == pass_bytes
    assert tail.step == int(NOW.timestamp()) // STEP_S == step_of(NOW)
    assert tail.code == step_code(secret, tail.step)
    assert not looks_rotating(pass_bytes)  # a plain pass is not a rotating one


def test_a_screenshot_is_refused_once_it_is_more_than_a_minute_old() -> None:
    code = rotating_code(a_pass(), pass_secret(SITE_SECRET, b"x" * 8), NOW)  # wrong pass id
    assert check(code, NOW) is Reason.BAD_SIGNATURE
    pass_bytes = a_pass()
    shown_at = datetime.fromtimestamp(step_of(NOW) * STEP_S, UTC)  # a step's first second
    code = rotating_code(pass_bytes, pass_secret(SITE_SECRET, pass_bytes[4:12]), shown_at)
    for age_s in range(0, MAX_AGE_S):
        assert check(code, shown_at + timedelta(seconds=age_s)) is Reason.OK, age_s
    assert check(code, shown_at + timedelta(seconds=MAX_AGE_S)) is Reason.EXPIRED
    # A phone up to one step ahead of the gate is fine; further ahead is the future.
    assert check(code, shown_at - timedelta(seconds=STEP_S)) is Reason.OK
    assert check(code, shown_at - timedelta(seconds=STEP_S + 1)) is Reason.NOT_YET_VALID
    # Another site's secret: the code does not match.
    assert check(code, shown_at, os.urandom(32)) is Reason.BAD_SIGNATURE


def test_a_forged_step_does_not_pass() -> None:
    pass_bytes = a_pass()
    code = bytearray(rotating_code(pass_bytes, pass_secret(SITE_SECRET, pass_bytes[4:12]), NOW))
    code[87] ^= 1  # the step, moved by one: its code no longer matches
    assert check(bytes(code), NOW) is Reason.BAD_SIGNATURE


def test_bad_inputs_are_errors_not_crashes() -> None:
    with pytest.raises(ValueError):
        split_rotating(b"\xa7" * 95)
    with pytest.raises(ValueError):
        pass_secret(b"short", b"12345678")
    with pytest.raises(ValueError):
        step_of(datetime(2026, 1, 1))


def test_a_rotating_pass_is_a_version_6_qr_and_the_gates_decoders_return_its_bytes() -> None:
    decoders = {name: make_decoder(name) for name in ("ensemble", "pyzbar", "zxing")}
    for _ in range(5):
        pass_bytes = a_pass()
        code = rotating_code(pass_bytes, pass_secret(SITE_SECRET, pass_bytes[4:12]), NOW)
        frame, version = ecc_m_frame(code)
        assert version == 6
        for name, decoder in decoders.items():
            assert [found.data for found in decoder.decode(frame)] == [code], name
