"""Signed passes: what a site issues and a gate verifies offline (issue 15, step 0: the contract).

A pass is 84 bytes, carried as the bytes of a QR code in byte mode: exactly what a version 5 QR
(37 x 37 modules) holds at error correction M, so a phone screen or a printed card shows it as a
coarse, easy code. pyzbar and zxing-cpp both hand its bytes back exactly
(tests/protocol/test_passes.py reads them through the gate's own decoders).

    offset  size  field
    0       1     MAGIC_V1 (0xA7): a pass of this layout. 0xA7 can never begin UTF-8 text, so a
                  pass is never mistaken for a CCCD card, a URL or an enrolment code
    1       1     flags: bit 0 = ISSUED (the site vouches for the holder: access mode may grant
                  it); clear = made from what a visitor typed (self check-in: log mode only);
                  bit 1 = PHONE (valid only with a rotating code after it: a phone's pass)
    2       2     key id, big-endian: which of the site's Ed25519 keys signed it
    4       8     pass id, random: what lists, revocations and the registry name
    12      4     valid from, minutes since 1970-01-01T00:00Z, big-endian
    16      4     valid until (exclusive), minutes since 1970-01-01T00:00Z
    20      64    Ed25519 signature over SIGNING_CONTEXT + bytes 0..19

The holder's name is not in the pass (it would push the code past version 5): the registry maps
the pass id to the person, and lists pushed to gates carry what a gate needs. Times are whole
minutes: a pass is valid from the start of its first minute to the start of its `until` minute.

A gate keeps the site's public keys (pushed by the server, retained and versioned) and checks a
pass with `verify_pass(pass_, keys, now)`: the signature under the key its id names (an unknown
key id is a foreign or forged pass: `bad_signature`), then the window (`not_yet_valid`,
`expired`), allowing CLOCK_SKEW either side for a gate whose clock is a little off. Revocation
and lists are the gate's next step, not the pass's.

Signing needs the private key, which only the server holds (`sign_pass`); `cryptography` is in
the server's extra, and joins the gate's when the gate verifies passes.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntFlag

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.verdicts import Reason

MAGIC_V1 = 0xA7
SIGNING_CONTEXT = b"gatescan pass v1\x00"
SIGNATURE_BYTES = 64
_BODY = struct.Struct(">BBH8sII")  # magic, flags, key id, pass id, from, until
PASS_BYTES = _BODY.size + SIGNATURE_BYTES  # 84: a version 5 QR at error correction M
CLOCK_SKEW = timedelta(minutes=2)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The last minute a datetime can hold (9999-12-31T23:59Z), well inside 32 bits.
_MAX_MINUTES = int((datetime(9999, 12, 31, 23, 59, tzinfo=UTC) - _EPOCH).total_seconds() // 60)


class PassFlags(IntFlag):
    ISSUED = 1  # the site vouches for the holder; clear: self check-in, log mode only
    # Shown only by the holder's page, with its rotating code (protocol/rotating_passes.py): the
    # 84 bytes alone, copied off a screen, are refused.
    PHONE = 2


class PassFormatError(ValueError):
    """Bytes that begin like a pass but are not one; the message says why."""


@dataclass(frozen=True)
class PassBody:
    """What a pass says, before anyone checked who signed it."""

    key_id: int
    pass_id: bytes  # 8 random bytes
    valid_from: datetime
    valid_until: datetime
    flags: PassFlags = PassFlags.ISSUED

    def __post_init__(self) -> None:
        if not 0 <= self.key_id <= 0xFFFF:
            raise ValueError(f"key id {self.key_id} is not 0..65535")
        if len(self.pass_id) != 8:
            raise ValueError("a pass id is 8 bytes")
        if self.valid_until <= self.valid_from:
            raise ValueError("a pass must end after it begins")

    @property
    def issued(self) -> bool:
        return bool(self.flags & PassFlags.ISSUED)

    def pass_id_text(self) -> str:
        """The pass id as lists, the registry and the dashboard write it: 16 hex digits."""
        return self.pass_id.hex()

    def body_bytes(self) -> bytes:
        return _BODY.pack(
            MAGIC_V1,
            int(self.flags),
            self.key_id,
            self.pass_id,
            _minutes(self.valid_from),
            _minutes(self.valid_until),
        )


@dataclass(frozen=True)
class SignedPass:
    body: PassBody
    signature: bytes

    def to_bytes(self) -> bytes:
        return self.body.body_bytes() + self.signature


def new_pass_id() -> bytes:
    return secrets.token_bytes(8)


def looks_like_pass(code: bytes) -> bool:
    """Whether scanned bytes are meant as a pass (well formed or not)."""
    return code[:1] == bytes([MAGIC_V1])


def sign_pass(body: PassBody, key: Ed25519PrivateKey) -> SignedPass:
    return SignedPass(body, key.sign(SIGNING_CONTEXT + body.body_bytes()))


def parse_pass(code: bytes) -> SignedPass:
    """The pass in `code`, or PassFormatError. Checks the layout only, not the signature."""
    if not looks_like_pass(code):
        raise PassFormatError("not a gatescan pass")
    if len(code) != PASS_BYTES:
        raise PassFormatError(f"a pass is {PASS_BYTES} bytes, this code has {len(code)}")
    _magic, flags, key_id, pass_id, start, end = _BODY.unpack_from(code)
    if flags & ~int(PassFlags.ISSUED | PassFlags.PHONE):
        raise PassFormatError(f"unknown flags {flags:#04x}")
    if end <= start:
        raise PassFormatError("its window ends before it begins")
    if end > _MAX_MINUTES:
        raise PassFormatError("its window ends after the year 9999")
    body = PassBody(key_id, pass_id, _time(start), _time(end), PassFlags(flags))
    return SignedPass(body, code[_BODY.size :])


def verify_pass(signed: SignedPass, keys: Mapping[int, Ed25519PublicKey], now: datetime) -> Reason:
    """`ok`, or why the pass does not hold now: `bad_signature` (a key this gate does not know,
    or a signature that does not match: forged, tampered or another site's), `not_yet_valid`,
    `expired`. `now` must be timezone-aware."""
    key = keys.get(signed.body.key_id)
    if key is None:
        return Reason.BAD_SIGNATURE
    try:
        key.verify(signed.signature, SIGNING_CONTEXT + signed.body.body_bytes())
    except InvalidSignature:
        return Reason.BAD_SIGNATURE
    if now + CLOCK_SKEW < signed.body.valid_from:
        return Reason.NOT_YET_VALID
    if now - CLOCK_SKEW >= signed.body.valid_until:
        return Reason.EXPIRED
    return Reason.OK


def _minutes(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("a pass's times must say their time zone")
    minutes = int((moment - _EPOCH).total_seconds() // 60)
    if not 0 <= minutes <= _MAX_MINUTES:
        raise ValueError(f"{moment.isoformat()} is outside what a pass can hold")
    return minutes


def _time(minutes: int) -> datetime:
    return _EPOCH + timedelta(minutes=minutes)
