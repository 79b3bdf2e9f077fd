"""A check-in stored as a gate's entry is (issue 18): the same `Event`, checked by the same
model, written by the store's own path (`Store.add_events`: deduplicated by id, a subject
`gatescan person erase` erased not stored), so the entries page, tracing, occupancy and presence
and the exports read it with no change of theirs.

    the gate        location.location_id ("loc-..."; a location is not a device: no devices row)
    site_id         the location's site
    direction       the button the person pressed (in, out)
    status, reason  recorded, ok
    credential_type self
    subject_id      the CCCD given, else `tel-` + a keyed hash of the phone (declaration.py)
    subject_name    the name given
    code_text       `health=n,n,n tel=+84...`: the phone for a manager to call, masked as any
                    code text is (its last 4 characters: the phone's last 4 digits)
    code_sha256     SHA-256 of that text, code_length its bytes
    seq             the server's time in microseconds; boot_id `checkin`; clock_synced true
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from protocol.event_ids import new_event_id
from protocol.messages import Event
from protocol.verdicts import CredentialType, Reason, VerdictStatus
from server.checkin.declaration import Declaration, subject_id
from server.clock import local_day_start
from server.locations.records import Location
from server.store.database import Store
from server.store.site_policy import rotation_secret
from server.store.tables import entries_table

BOOT_ID = "checkin"


class SiteSecrets:
    """Each site's secret for phone-derived ids, read once per process (it never changes)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._known: dict[str, bytes] = {}

    def __call__(self, site_id: str, now: datetime) -> bytes:
        secret = self._known.get(site_id)
        if secret is None:
            secret = self._known[site_id] = rotation_secret(self._store.engine, site_id, now)
        return secret


def checkin_event(
    declaration: Declaration, location: Location, now: datetime, site_secret: bytes
) -> Event:
    text = declaration.code_text()
    raw = text.encode("utf-8")
    stamp_us = int(now.timestamp() * 1_000_000)
    return Event(
        event_id=new_event_id(stamp_us * 1000),
        device_id=location.device_id,
        site_id=location.site_id,
        seq=stamp_us,
        boot_id=BOOT_ID,
        ts=now,
        clock_synced=True,
        direction=declaration.direction,
        status=VerdictStatus.RECORDED,
        reason=Reason.OK,
        credential_type=CredentialType.SELF,
        subject_id=subject_id(declaration, site_secret),
        subject_name=declaration.name,
        code_sha256=hashlib.sha256(raw).hexdigest(),
        code_length=len(raw),
        code_text=text,
    )


def record(store: Store, event: Event, now: datetime) -> None:
    store.add_events([event], received_at=now)


def checkins_today(store: Store, location: Location, now: datetime, tz: ZoneInfo) -> int:
    """The location's check-ins (and check-outs) since the site's local midnight."""
    c = entries_table.c
    query = select(func.count()).where(
        c.ts >= local_day_start(now, tz),
        c.device_id == location.device_id,
        c.credential_type == CredentialType.SELF.value,
    )
    with store.engine.connect() as conn:
        return int(conn.scalar(query) or 0)
