"""The demo's site in the server's database, and what its two gates are shown.

An entrance in access mode and an exit in log mode. Six of the sample people are on the allow
list; a visitor holds a printed pass; another's pass was revoked; a stranger's card is on no
list; someone shows a restaurant's menu, someone a damaged card. Anti-passback is `soft` (a
second entry without an exit is let in and recorded with the warning `already_inside`), so the
looping demo shows the warning without shutting people out. Some people leave by the exit, so
the occupancy page shows people coming and going. A phone pass is issued too: its link opens
the holder's page on the demo's dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from gatescan.testing.samples import sample_cards
from protocol.passes import PassFlags
from protocol.rotating_passes import pass_secret
from protocol.site_policy import list_subject
from server.holder.routes import holder_link
from server.store.site_keys import PassRegistry, SiteKeys, issue_pass
from server.store.site_policy import SiteLists, rotation_secret, set_presence_rules

MENU = b"https://quan-pho-ha-noi.vn/thuc-don"
DAMAGED = "001099012345|Trần Văn Đức|31021990|Nam|Hà Nội|15082021".encode()


@dataclass(frozen=True)
class DemoSite:
    entrance: list[bytes | None]  # what the entrance's camera sees, in a loop (None: nothing)
    exit: list[bytes | None]
    phone_link: str | None  # the phone pass's page, when there is a dashboard


def prepare_demo_site(
    engine: Engine, site_id: str, now: datetime, dashboard_url: str | None
) -> DemoSite:
    keys = SiteKeys(engine)
    if keys.active(site_id) is None:
        keys.rotate(site_id, now)
    cards = sample_cards()
    staff, stranger = cards[:6], cards[6]
    SiteLists(engine).add(site_id, "allow", [list_subject(card.id12) for card in staff], now)
    set_presence_rules(engine, site_id, now, anti_passback="soft")
    start, until = (
        now.replace(second=0, microsecond=0) - timedelta(hours=1),
        now + timedelta(days=7),
    )
    visitor = issue_pass(engine, site_id, "Lê Văn Tám", start, until, now).to_bytes()
    revoked = issue_pass(engine, site_id, "Hoàng Thị Mai", start, until, now)
    PassRegistry(engine).revoke(revoked.body.pass_id_text(), now)
    link = None
    if dashboard_url is not None:
        phone = issue_pass(
            engine, site_id, "Phạm Minh Châu", start, until, now, PassFlags.ISSUED | PassFlags.PHONE
        )
        secret = pass_secret(rotation_secret(engine, site_id, now), phone.body.pass_id)
        link = holder_link(dashboard_url, phone.to_bytes(), secret, "Phạm Minh Châu")
    people = [card.payload() for card in staff]
    shown = [
        people[0], people[1], visitor, people[2], MENU, people[3], revoked.to_bytes(),
        people[4], stranger.payload(), DAMAGED, staff[5].payload(six_field=True),
    ]  # fmt: skip
    leaving = [people[0], people[2], visitor, people[3]]
    # A second of nothing first: the gate connects and takes the site's policy meanwhile.
    entrance = [None, *(frame for code in shown for frame in (code, None))]
    exit_: list[bytes | None] = [None] * 6  # people leave some seconds after they came in
    exit_ += [frame for code in leaving for frame in (code, None, None, None, None)]
    exit_ += [None] * (len(entrance) - len(exit_))  # the same period: people leave after coming
    return DemoSite(entrance, exit_, link)
