"""Known devices: a browser that logged in as a user carries a cookie that says so, and its
tries at that name are throttled on their own, apart from everyone else's.

Without it, a guesser who tries a name each time its wait ends (or keeps asking, refusals cost
it nothing) takes every turn at that name, and the real user, right password in hand, gets 429
for as long as the guessing goes on: a lockout again. With it, the real user's browser has its
own turns; a new browser (or a cleared cookie) shares the name's turns with the guessers.

The cookie holds an expiry time and an HMAC of the name and that time, keyed by a per-process
random secret (a restart, or another process behind a load balancer, knows no device: the
browser is then a new one, until its next login). It names no user; it is not a credential (a
stolen one buys its holder the same few tries a browser gets, no more).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from server.dashboard.login.throttle import canonical_name

DEVICE_COOKIE = "gatescan_device"
DEVICE_DAYS = 30  # how long a browser stays known after its latest login


def device_cookie(key: bytes, username: str, expires: datetime) -> str:
    """The cookie's value for a browser that just logged in as `username`."""
    stamp = int(expires.timestamp())
    return f"{stamp}.{_mac(key, username, stamp)}"


def known_device(key: bytes, username: str, cookie: str | None, now: datetime) -> str:
    """The device the cookie names, if it was given for `username` and has not expired: the
    throttle's key for its own turns at that name; else ""."""
    stamp, _, mac = (cookie or "").partition(".")
    if not stamp.isdigit() or int(stamp) <= now.timestamp():
        return ""
    return mac if hmac.compare_digest(mac, _mac(key, username, int(stamp))) else ""


def _mac(key: bytes, username: str, stamp: int) -> str:
    message = f"{canonical_name(username)}\0{stamp}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]
