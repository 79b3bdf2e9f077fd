"""A location's token, what its poster's URL carries (issue 18): `LOCATION_ID.SIGNATURE`, the
signature the first 16 bytes of HMAC-SHA256 under the location's own key, base64url.

    token = location_token("loc-abcdefghij", key)   # "loc-abcdefghij.Zm9v..."
    location_of_token(token)                         # "loc-abcdefghij", or None if malformed
    token_matches(token, "loc-abcdefghij", key)      # constant-time check of the signature

Anyone can read the id; nobody without the key can make a token for an id, or change the id of
one (an "altered or forged id is refused"). Nothing personal is in it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

LOCATION_ID_PATTERN = re.compile(r"loc-[a-z2-7]{10}")
_TOKEN = re.compile(r"(?P<id>loc-[a-z2-7]{10})\.(?P<signature>[A-Za-z0-9_-]{22})")
_PURPOSE = b"gatescan self check-in location v1\x00"


def _signature(location_id: str, key: bytes) -> str:
    digest = hmac.new(key, _PURPOSE + location_id.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode("ascii").rstrip("=")


def location_token(location_id: str, key: bytes) -> str:
    return f"{location_id}.{_signature(location_id, key)}"


def location_of_token(token: str) -> str | None:
    found = _TOKEN.fullmatch(token)
    return found["id"] if found else None


def token_matches(token: str, location_id: str, key: bytes) -> bool:
    expected = location_token(location_id, key).encode("ascii")
    return hmac.compare_digest(token.encode("ascii", "replace"), expected)
