"""Who is inside each site now, from the stored entries: people, not passages (issue 15).

A person is inside when their last passage today (since local midnight at the site) went through
an `in` gate; an `out` gate's passage puts them out again. Denied entries do not count: the
person did not pass. A person is who the entry names: the CCCD number or pass id, or for any
other code its digest. The day starts empty, as a paper register does.

The dashboard's occupancy page lists these people (masked); the site policy publisher pushes
them to the site's gates as the `inside` list (protocol/site_policy.py), with, per gate, the
highest seq of its entries the list already holds (`presence_seq`), so a gate lays its own later
passages over it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, func, literal, select

from server.store.tables import entries_table


@dataclass(frozen=True)
class LastPassage:
    """One person's last passage today at one site."""

    site_id: str
    person: str  # subject_id, or the code's digest for a code that names nobody
    subject_name: str
    credential_type: str
    direction: str
    ts: datetime
    device_id: str


def last_passages(
    conn: Connection,
    since: datetime,
    site_id: str | None = None,
    *,
    sites: Collection[str] | None = None,
) -> Iterator[LastPassage]:
    """Each person's last passage since `since`, per site (or at `site_id`; of `sites` only,
    when given), latest first."""
    for row in conn.execute(_last_passages(since, site_id, sites)):
        yield LastPassage(
            site_id=str(row.site_id),
            person=str(row.person),
            subject_name=row.subject_name or "",
            credential_type=str(row.credential_type),
            direction=str(row.direction),
            ts=row.ts,
            device_id=str(row.device_id),
        )


def people_inside(
    conn: Connection,
    since: datetime,
    site_id: str | None = None,
    *,
    sites: Collection[str] | None = None,
) -> Iterator[LastPassage]:
    """Those whose last passage since `since` went in: who is inside, latest in first."""
    passages = last_passages(conn, since, site_id, sites=sites)
    return (passage for passage in passages if passage.direction == "in")


def highest_seqs(conn: Connection, since: datetime, site_id: str) -> dict[str, int]:
    """For each gate with entries at the site since `since`, the highest seq stored."""
    c = entries_table.c
    query = (
        select(c.device_id, func.max(c.seq))
        .where(c.ts >= since, c.site_id == site_id)
        .group_by(c.device_id)
    )
    return {str(device): int(seq) for device, seq in conn.execute(query)}


def _last_passages(
    since: datetime, site_id: str | None, sites: Collection[str] | None
) -> Select[Any]:
    """A window function over today's passages: SQLite (3.25+) and PostgreSQL both run it."""
    c = entries_table.c
    person = func.coalesce(func.nullif(c.subject_id, literal("")), c.code_sha256).label("person")
    conditions = [c.ts >= since, c.status != "denied"]
    if site_id is not None:
        conditions.append(c.site_id == site_id)
    if sites is not None:
        conditions.append(c.site_id.in_(sorted(sites)))
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
        .where(*conditions)
        .subquery()
    )
    return select(ranked).where(ranked.c.rank == 1).order_by(ranked.c.ts.desc())
