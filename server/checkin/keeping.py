"""A pass to keep (issue 18): after a check-in, and only when the person asks ("Lưu mã cá nhân"),
a personal code they can show at a gate or keep on their phone.

    kept = keep_pass(store.engine, location, "Nguyễn Thị Hà", now)    # None: the site signs none
    kept.png_data_uri                                                # the QR, for an <img>

- The pass is protocol/passes.py's 84 bytes with the ISSUED flag clear: made from what a visitor
  typed, so a gate in log mode records it (a `pass` credential with its pass id) and a gate in
  access mode refuses it as `not_allowed` unless a manager puts its id on the allow list
  (device/verdict/policy.py). It is not a PHONE pass: the holder's page (/pass/) shows only
  phones' passes with their rotating codes; a self-declared pass is worth no more than a
  screenshot of it.
- Signed with the site's active key and kept in the registry (server/store/site_keys.py) with
  the name given and `issued` false, so `gatescan pass list|revoke` see and end it.
- Valid KEEP_DAYS from now: as long as the "remember me" cookie lives (remember.py).
- Shown once, on the "recorded" screen (and again to a remembered phone), as a PNG in a
  `data:` URI (the dashboard's CSP allows `img-src data:`): no URL holds it, nothing caches it
  and the page needs no script. The pass bytes hold no name.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from datetime import datetime, timedelta

import segno
from sqlalchemy import Engine

from protocol.passes import PassFlags, SignedPass
from server.locations.records import Location
from server.store.site_keys import SiteKeyError, SiteKeys, issue_pass

KEEP_DAYS = 30
SELF_DECLARED = PassFlags(0)  # ISSUED clear, PHONE clear
_QR_SCALE = 6  # a version 5 code is 37 + 8 modules: 270 px, sharp on a phone's screen


@dataclass(frozen=True)
class KeptPass:
    signed: SignedPass

    @property
    def pass_id(self) -> str:
        return self.signed.body.pass_id_text()

    @property
    def valid_until(self) -> datetime:
        return self.signed.body.valid_until

    @property
    def png_data_uri(self) -> str:
        return (
            "data:image/png;base64," + base64.b64encode(pass_png(self.signed.to_bytes())).decode()
        )


def site_signs(engine: Engine, site_id: str) -> bool:
    """Whether the site has an active key, so the form may offer a pass to keep."""
    return SiteKeys(engine).active(site_id) is not None


def keep_pass(engine: Engine, location: Location, name: str, now: datetime) -> KeptPass | None:
    """A self-declared pass for `name` at the location's site; None when the site has no key."""
    start = now.replace(second=0, microsecond=0)
    try:
        signed = issue_pass(
            engine,
            location.site_id,
            name,
            start,
            start + timedelta(days=KEEP_DAYS),
            now,
            flags=SELF_DECLARED,
        )
    except SiteKeyError:
        return None
    return KeptPass(signed)


def pass_png(code: bytes) -> bytes:
    """The pass's bytes as a QR in byte mode at error correction M (a version 5 code), as a
    gate reads it (protocol/passes.py)."""
    out = io.BytesIO()
    qr = segno.make(code, error="m", micro=False, boost_error=False, mode="byte")
    qr.save(out, kind="png", scale=_QR_SCALE, border=4)
    return out.getvalue()
