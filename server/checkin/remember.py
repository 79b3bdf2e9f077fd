"""Remember me on this phone (issue 18), only when the person ticks "Ghi nhớ tôi" (unticked by
default): a cookie that lets the next visit to any poster of the same site greet them by name
and check them in or out with one tap.

    value = seal(Remembered(name, phone, cccd, made=now), site_id, site_secret)
    opened = open_sealed(value, site_id, site_secret, now)   # None: absent, altered, old, elsewhere

The cookie (REMEMBER_COOKIE) holds the name, phone and ID number given, sealed with AES-256-GCM
under a key drawn from the site's own secret (HMAC-SHA256 of the site's rotating-pass secret,
kept in the database only, with a purpose string of its own), the site id as associated data:
opaque to anyone without the server's database (no name, phone or number bytes in it),
refused whole when a byte of it changes, and unreadable at another site's posters. A fresh
random 12-byte nonce each time. It lives REMEMBER_DAYS (Max-Age, and the time sealed inside,
so an old value copied back is refused too); HttpOnly, SameSite=Lax, path /c/, Secure when the
dashboard sends its cookies over HTTPS only (WebSettings' secure_cookies). "Không phải tôi / Not
me" deletes it. If the person asked for a pass to keep, its bytes ride along, so the greeting
shows the code again (while the registry has it, unrevoked and valid).

Nothing is kept on the server for this: a phone forgotten is a cookie deleted, and the entries
it makes are stored as any check-in's are (the same limits, cap, rules and erasure).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from protocol.passes import PASS_BYTES

REMEMBER_COOKIE = "gatescan_me"
REMEMBER_DAYS = 30
_PURPOSE = b"gatescan check-in remember me v1\x00"
_VERSION = "v1"
_NONCE_BYTES = 12
MAX_COOKIE_CHARS = 1024  # a name of 100 characters and a pass: well under 600


@dataclass(frozen=True)
class Remembered:
    name: str
    phone: str  # +84...
    cccd: str  # "" when not given
    made: datetime
    pass_code: bytes = b""  # the kept pass's 84 bytes, or nothing

    def form(self) -> dict[str, str]:
        """What the check-in form would have held (declaration.py reads it again)."""
        return {"name": self.name, "phone": self.phone, "cccd": self.cccd}


def _key(site_secret: bytes) -> bytes:
    return hmac.new(site_secret, _PURPOSE, hashlib.sha256).digest()


def seal(remembered: Remembered, site_id: str, site_secret: bytes) -> str:
    plain = json.dumps(
        {
            "n": remembered.name,
            "p": remembered.phone,
            "c": remembered.cccd,
            "t": int(remembered.made.timestamp()),
            "k": base64.b64encode(remembered.pass_code).decode("ascii"),
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(_key(site_secret)).encrypt(nonce, plain, site_id.encode("utf-8"))
    return _VERSION + "." + base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")


def open_sealed(
    value: str | None, site_id: str, site_secret: bytes, now: datetime
) -> Remembered | None:
    """The person the cookie names, or None for no cookie, an altered one, one sealed for
    another site, or one older than REMEMBER_DAYS."""
    if not value or len(value) > MAX_COOKIE_CHARS or not value.startswith(_VERSION + "."):
        return None
    body = value[len(_VERSION) + 1 :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        plain = AESGCM(_key(site_secret)).decrypt(
            raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], site_id.encode("utf-8")
        )
        fields = json.loads(plain)
        made = datetime.fromtimestamp(int(fields["t"]), tz=now.tzinfo)
        remembered = Remembered(
            str(fields["n"]),
            str(fields["p"]),
            str(fields["c"]),
            made,
            base64.b64decode(str(fields["k"])),
        )
    except (ValueError, InvalidTag, binascii.Error, KeyError, TypeError):
        return None
    if remembered.pass_code and len(remembered.pass_code) != PASS_BYTES:
        return None
    if not made <= now + timedelta(minutes=1) or now - made > timedelta(days=REMEMBER_DAYS):
        return None
    return remembered
