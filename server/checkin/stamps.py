"""The check-in form's stamp: a signed, time-limited token in a hidden field (issue 18).

    stamp = form_stamp(location, issued=now)      # "1796000000.Q2hlY2s..."
    stamp_problem(stamp, location, now)           # None, or "stamp.expired" / "stamp.invalid"

Why this and what guards against what. The page is public: there is no session to hang a
synchroniser token on. Two things protect the POST:

1. Cross-site request forgery is refused by the dashboard's own rule, which holds for every
   POST of the app (server/dashboard/csrf.py, `verify_csrf`): with no session, the form carries
   the value of a random cookie set when the form was rendered (`gatescan_login_csrf`,
   HttpOnly, SameSite=Strict) and the two must match. Another site can neither read nor set
   that cookie, so a forged POST from its page is a 403 before anything is read.
2. This stamp: the first 16 bytes of HMAC-SHA256, under the location's own key (in the database,
   never shown; server/locations/), of the location id and the time the form was made. A form
   is good for STAMP_LIFETIME_S at one location only: a form kept from one poster cannot
   record at another, a form saved once cannot be replayed for days, and a location re-keyed or
   disabled ends its open forms with its posters. It needs no secret of its own and no state,
   so several `gatescan web` processes behind one address check each other's forms.

Neither stops a script that loads the page first: the rate limits (limits.py) and the daily cap
are for that.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from server.locations.records import Location

STAMP_LIFETIME_S = 2 * 3600  # a person may leave the form open while they queue
_PURPOSE = b"gatescan check-in form v1\x00"
_STAMP = re.compile(r"(?P<issued>[0-9]{1,12})\.(?P<signature>[A-Za-z0-9_-]{22})")
_CLOCK_SLACK_S = 60  # a stamp "from the future" by less than this is another process's clock


def _signature(location: Location, issued: int) -> str:
    message = _PURPOSE + f"{location.location_id}\x00{issued}".encode("ascii")
    digest = hmac.new(location.key, message, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def form_stamp(location: Location, issued: int) -> str:
    """The stamp of a form made at `issued` (Unix seconds) for `location`."""
    return f"{issued}.{_signature(location, issued)}"


def stamp_problem(stamp: str, location: Location, now: int) -> str | None:
    """None for a stamp this location made within STAMP_LIFETIME_S; else the words' key."""
    found = _STAMP.fullmatch(stamp)
    if found is None:
        return "stamp.invalid"
    issued = int(found["issued"])
    expected = _signature(location, issued)
    if not hmac.compare_digest(found["signature"].encode("ascii"), expected.encode("ascii")):
        return "stamp.invalid"
    if issued > now + _CLOCK_SLACK_S:
        return "stamp.invalid"
    if now - issued > STAMP_LIFETIME_S:
        return "stamp.expired"
    return None
