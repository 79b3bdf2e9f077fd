"""`/pass/`: the page a pass holder opens on their phone (issue 15, rotating passes).

    holder_link("https://gates.example.vn", pass_bytes, secret, "Nguyễn Thị Hà")
      -> "https://gates.example.vn/pass/#v1.<pass>.<secret>.<name>"   (each base64url)

The page (static/index.html, holder.js, qr.js) reads the pass, its per-pass secret
(protocol.rotating_passes.pass_secret) and the holder's name from the link's fragment, which the
browser never sends to any server, computes the code of each 30 s step with WebCrypto's HMAC,
and draws the QR code itself (qr.js, byte mode at error correction M). A service worker
(sw.js) keeps its files, so the page opens and runs with no network once it has loaded
once. Nothing here needs a login, and nothing here knows any pass: the server serves the same
files to everyone, and never sees the fragment.

WebCrypto runs only in a secure context: the page is served over HTTPS (deploy/proxy/), or
from localhost in the demo.
"""

from __future__ import annotations

import base64
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from protocol.passes import PASS_BYTES
from protocol.rotating_passes import SECRET_BYTES

STATIC = Path(__file__).parent / "static"
PAGE_PATH = "/pass/"
_FILES = {
    "qr.js": "text/javascript",
    "holder.js": "text/javascript",
    "sw.js": "text/javascript",
    "holder.css": "text/css",
}

router = APIRouter(include_in_schema=False)


def holder_link(base_url: str, pass_bytes: bytes, secret: bytes, holder_name: str = "") -> str:
    """The link the holder is given once, when the pass is issued."""
    if len(pass_bytes) != PASS_BYTES or len(secret) != SECRET_BYTES:
        raise ValueError("a holder link carries an 84-byte pass and its 32-byte secret")
    parts = ["v1", _b64url(pass_bytes), _b64url(secret)]
    if holder_name:
        parts.append(_b64url(holder_name.encode("utf-8")))
    return f"{base_url.rstrip('/')}{PAGE_PATH}#{'.'.join(parts)}"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


@router.get("/pass")
def page_without_slash() -> RedirectResponse:
    return RedirectResponse(PAGE_PATH, status_code=308)


@router.get(PAGE_PATH)
def holder_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


@router.get(PAGE_PATH + "{name}")
def holder_file(name: str) -> FileResponse:
    media_type = _FILES.get(name)
    if media_type is None:
        return FileResponse(STATIC / "index.html", status_code=404, media_type="text/html")
    return FileResponse(STATIC / name, media_type=f"{media_type}; charset=utf-8")
