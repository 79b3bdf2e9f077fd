"""Who is inside each site now: people, not passages (issue 15).

A person is inside when their last passage today (since local midnight at the site) went
through an `in` gate; they are out again after an `out` gate. Scanning twice at the entrance is
one person inside, not two. A gate's direction (in / out) is on each of its entries, as its
config said when it scanned. Denied entries do not count: the person did not pass.

A person is who the entry names: the CCCD number or pass id, or for any other code its digest
(the same code shown twice is the same person). Someone who came in yesterday and stayed the
night is not counted today: the day starts empty, as a paper register does. Someone who leaves
by a door without an `out` gate stays "inside" until midnight: the page says so.

The list of people inside is masked (server/dashboard/reports/masking.py): a guard at an
evacuation can recognise people they know, and looking a person up stays a manager's audited
search on the entries page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import Select, func, literal, select

from server.clock import Clock, local_day_start, utc_now
from server.dashboard.reports.masking import mask_id, mask_name
from server.store.database import Store
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


def occupancy_today(store: Store, tz: ZoneInfo, *, clock: Clock = utc_now) -> list[SiteOccupancy]:
    """One row per site that saw a passage today, by site id."""
    since = local_day_start(clock(), tz)
    c = entries_table.c
    passed = c.ts >= since, c.status != "denied"
    counts: dict[str, dict[str, int]] = {}
    people: dict[str, list[PersonInside]] = {}
    inside: dict[str, int] = {}
    with store.engine.connect() as conn:
        by_direction = select(c.site_id, c.direction, func.count()).where(*passed)
        for site, direction, count in conn.execute(by_direction.group_by(c.site_id, c.direction)):
            counts.setdefault(str(site), {})[str(direction)] = int(count)
        for row in conn.execute(_last_passages(since)):
            if row.direction != "in":
                continue
            site = str(row.site_id)
            inside[site] = inside.get(site, 0) + 1
            listed = people.setdefault(site, [])
            if len(listed) < MAX_LISTED:
                listed.append(
                    PersonInside(
                        subject_id=mask_id(row.person),
                        subject_name=mask_name(row.subject_name or ""),
                        credential_type=str(row.credential_type),
                        entered_at=row.ts,
                        device_id=str(row.device_id),
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


def _last_passages(since: datetime) -> Select[Any]:
    """Each person's last passage today per site (window function: SQLite and PostgreSQL)."""
    c = entries_table.c
    person = func.coalesce(func.nullif(c.subject_id, literal("")), c.code_sha256).label("person")
    ranked = (
        select(
            c.site_id,
            person,
            c.subject_name,
            c.credential_type,
            c.direction,
            c.ts,
            c.device_id,
            func.row_number()
            .over(
                partition_by=(c.site_id, person),
                order_by=(c.ts.desc(), c.device_id.desc(), c.seq.desc()),
            )
            .label("rank"),
        )
        .where(c.ts >= since, c.status != "denied")
        .subquery()
    )
    return select(ranked).where(ranked.c.rank == 1).order_by(ranked.c.ts.desc())
