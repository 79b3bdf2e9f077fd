"""How many people are inside each site today: entrances minus exits since local midnight.

A gate's direction (in / out) is on each of its entries, as its config said when it scanned.
Denied entries do not count: the person did not pass.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import func, select

from server.clock import Clock, local_day_start, utc_now
from server.store.database import Store
from server.store.tables import entries_table


class SiteOccupancy(BaseModel):
    site_id: str
    ins: int
    outs: int
    inside: int  # ins - outs, never below 0 (people who came in before midnight may leave)
    since: datetime  # local midnight, UTC


def occupancy_today(store: Store, tz: ZoneInfo, *, clock: Clock = utc_now) -> list[SiteOccupancy]:
    """One row per site that saw a passage today, by site id."""
    since = local_day_start(clock(), tz)
    c = entries_table.c
    query = (
        select(c.site_id, c.direction, func.count())
        .where(c.ts >= since, c.status != "denied")
        .group_by(c.site_id, c.direction)
    )
    counts: dict[str, dict[str, int]] = {}
    with store.engine.connect() as conn:
        for site, direction, count in conn.execute(query):
            counts.setdefault(str(site), {})[str(direction)] = int(count)
    rows = []
    for site in sorted(counts):
        ins, outs = counts[site].get("in", 0), counts[site].get("out", 0)
        inside = max(0, ins - outs)
        rows.append(SiteOccupancy(site_id=site, ins=ins, outs=outs, inside=inside, since=since))
    return rows
