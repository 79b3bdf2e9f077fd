"""Rotating passes for phones: the signed pass plus a code that changes every 30 s (issue 15).

A screenshot of a phone's pass must not open the door tomorrow, or for a friend at the next gate
a minute later. So the holder's page (served by the server, working offline once loaded) shows
the pass with a time-windowed code appended, computed as RFC 6238 (TOTP) does: an HMAC of the
30-second step number under a per-pass secret. The QR code's bytes:

    offset  size  field
    0       84    the signed pass (protocol/passes.py), unchanged
    84      4     the step: floor(unix seconds / STEP_S), big-endian
    88      8     HMAC-SHA256(pass secret, step as 8 bytes big-endian), its first 8 bytes

96 bytes: a version 6 QR at error correction M (41 x 41 modules), as the issue asks (<= 6).

The pass secret is `pass_secret(site secret, pass id)`: a gate derives it from the site's
rotation secret (pushed with the site policy) and the pass id in the code, so it needs no
network and no per-pass list. The holder gets it once, in the link's fragment (`#...`), which a
browser never sends to a server, so it reaches no server log; the page keeps it in the browser.

The step travels in the code so that a gate checks one HMAC, not several: it accepts a step
from one before its own to one after (`ACCEPTED_STEPS`). What that means, measured in time:
- a code is refused once its step began more than MAX_AGE_S (60 s) before the gate's clock
  says now (`expired`): a screenshot is useless after a minute at most (after 30 s at least);
- a phone whose clock runs ahead of the gate's by up to STEP_S (30 s) is still accepted; a phone
  further ahead is refused `not_yet_valid`, a phone behind by more than 30 s `expired`. Phones
  set their clocks from the network; gates from NTP (a gate whose clock is not synchronised says
  so in its status and light).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from datetime import datetime

from protocol.passes import MAGIC_V1, PASS_BYTES
from protocol.verdicts import Reason

STEP_S = 30
MAX_AGE_S = 2 * STEP_S  # the start of the previous step to the end of this one
ACCEPTED_STEPS = (-1, 0, 1)  # code step - gate step
CODE_BYTES = 8
ROTATING_PASS_BYTES = PASS_BYTES + 4 + CODE_BYTES  # 96: a version 6 QR at error correction M
SECRET_BYTES = 32
_TAIL = struct.Struct(">I8s")
_CONTEXT = b"gatescan rotating pass v1\x00"


def looks_rotating(code: bytes) -> bool:
    """A pass with a rotating code after it (its pass part may still be anything)."""
    return len(code) == ROTATING_PASS_BYTES and code[:1] == bytes([MAGIC_V1])


def pass_secret(site_secret: bytes, pass_id: bytes) -> bytes:
    """The per-pass secret the holder's page and every gate of the site compute alike."""
    if len(site_secret) != SECRET_BYTES:
        raise ValueError(f"a site rotation secret is {SECRET_BYTES} bytes")
    return hmac.new(site_secret, _CONTEXT + pass_id, hashlib.sha256).digest()


def step_of(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("a moment must say its time zone")
    return int(moment.timestamp()) // STEP_S


def step_code(secret: bytes, step: int) -> bytes:
    return hmac.new(secret, step.to_bytes(8, "big"), hashlib.sha256).digest()[:CODE_BYTES]


def rotating_code(pass_bytes: bytes, secret: bytes, moment: datetime) -> bytes:
    """What the holder's page shows at `moment`: the pass, the step, the step's code."""
    if len(pass_bytes) != PASS_BYTES:
        raise ValueError(f"a pass is {PASS_BYTES} bytes")
    step = step_of(moment)
    return pass_bytes + _TAIL.pack(step, step_code(secret, step))


@dataclass(frozen=True)
class RotatingTail:
    step: int
    code: bytes


def split_rotating(code: bytes) -> tuple[bytes, RotatingTail]:
    """(the pass's 84 bytes, its tail). ValueError when `code` is not a rotating pass."""
    if not looks_rotating(code):
        raise ValueError(f"a rotating pass is {ROTATING_PASS_BYTES} bytes, starting 0xA7")
    step, tail_code = _TAIL.unpack_from(code, PASS_BYTES)
    return code[:PASS_BYTES], RotatingTail(step, tail_code)


def verify_rotation(tail: RotatingTail, secret: bytes, now: datetime) -> Reason:
    """`ok`, `bad_signature` (a code not made with this pass's secret), `expired` (a step too
    old: a screenshot), `not_yet_valid` (a step from the future). The code is checked first, so
    a forged step never tells the forger anything about the window."""
    if not hmac.compare_digest(step_code(secret, tail.step), tail.code):
        return Reason.BAD_SIGNATURE
    offset = tail.step - step_of(now)
    if offset < ACCEPTED_STEPS[0]:
        return Reason.EXPIRED
    if offset > ACCEPTED_STEPS[-1]:
        return Reason.NOT_YET_VALID
    return Reason.OK
