"""Who is inside each site now: people, not passages (server/store/presence.py says who).

The list of people inside is masked (server/dashboard/reports/masking.py): a guard at an
evacuation can recognise people they know, and looking a person up stays a manager's audited
search on the entries page. Someone who leaves by a door without an `out` gate stays "inside"
until midnight: the page says so.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import func, select

from server.clock import Clock, local_day_start, utc_now
from server.dashboard.reports.access import within_sites
from server.dashboard.reports.masking import mask_id, mask_name
from server.store.database import Store
from server.store.presence import people_inside
from server.store.tables import entries_table

# Enough for a page; the count above it is always exact.
MAX_LISTED = 500


class PersonInside(BaseModel):
    subject_id: str  # masked
    subject_name: str  # masked
    credential_type: str
    entered_at: datetime  # the passage in that put them inside
    device_id: str


class SiteOccupancy(BaseModel):
    site_id: str
    ins: int  # passages in today
    outs: int  # passages out today
    inside: int  # people whose last passage today was in
    since: datetime  # local midnight, UTC
    people: list[PersonInside] = []  # those people, latest first, at most MAX_LISTED


def occupancy_today(
    store: Store,
    tz: ZoneInfo,
    *,
    clock: Clock = utc_now,
    sites: frozenset[str] | None = None,
) -> list[SiteOccupancy]:
    """One row per site that saw a passage today (of `sites` only, when given), by site id."""
    since = local_day_start(clock(), tz)
    c = entries_table.c
    passed = c.ts >= since, c.status != "denied", within_sites(c.site_id, sites)
    counts: dict[str, dict[str, int]] = {}
    people: dict[str, list[PersonInside]] = {}
    inside: dict[str, int] = {}
    with store.engine.connect() as conn:
        by_direction = select(c.site_id, c.direction, func.count()).where(*passed)
        for site, direction, count in conn.execute(by_direction.group_by(c.site_id, c.direction)):
            counts.setdefault(str(site), {})[str(direction)] = int(count)
        for row in people_inside(conn, since, sites=sites):
            site = row.site_id
            inside[site] = inside.get(site, 0) + 1
            listed = people.setdefault(site, [])
            if len(listed) < MAX_LISTED:
                listed.append(
                    PersonInside(
                        subject_id=mask_id(row.person),
                        subject_name=mask_name(row.subject_name),
                        credential_type=row.credential_type,
                        entered_at=row.ts,
                        device_id=row.device_id,
                    )
                )
    return [
        SiteOccupancy(
            site_id=site,
            ins=counts[site].get("in", 0),
            outs=counts[site].get("out", 0),
            inside=inside.get(site, 0),
            since=since,
            people=people.get(site, []),
        )
        for site in sorted(counts)
    ]
