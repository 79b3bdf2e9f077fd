"""The server's public address and a location's check-in URL (issue 18): what a poster's QR holds.

    check_public_url("https://checkin.example.vn/")  # the address, or ValueError saying why
    checkin_url("https://checkin.example.vn/", location)  # "https://checkin.example.vn/c/TOKEN"

The public address is where a visitor's phone reaches the server (`--public-url` on `gatescan
server` and `gatescan web`, `public_url` in server.toml): http(s), a host, maybe a port and a
path (behind a proxy that serves it under one), no query or fragment, no user or password.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

CHECKIN_PATH = "/c/"  # the check-in page's route: /c/{token} (server/checkin/)


class HasToken(Protocol):
    @property
    def token(self) -> str: ...


def check_public_url(url: str) -> str:
    """`url` as given, if a phone could open a page under it; else ValueError saying why."""
    try:
        parts = urlsplit(url)
        port = parts.port  # a port that is not a number raises here
    except ValueError:
        raise ValueError(f"{url!r} is not a URL") from None
    if parts.scheme not in ("https", "http"):
        raise ValueError(
            f"{url!r}: an https:// (or http://) address, e.g. https://checkin.example.vn"
        )
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host")
    if parts.query or parts.fragment or url.rstrip().endswith(("?", "#")):
        raise ValueError(f"{url!r}: no query or fragment, the address alone")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{url!r}: no user or password in the address")
    if any(ch.isspace() for ch in url) or port == 0:
        raise ValueError(f"{url!r} is not a URL")
    return url


def checkin_url(public_url: str, location: HasToken) -> str:
    """The check-in page of `location` (its signed token), under the public address."""
    return public_url.rstrip("/") + CHECKIN_PATH + location.token
