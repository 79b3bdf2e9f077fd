"""Contact tracing: one subject's visits, and everyone who passed the same gate or site within
±N minutes of each (the national app's rule is 60).

A passage is a moment (a gate reads a code), not a stay, so each person is taken to be present
from N minutes before to N minutes after each of their passages. Two people's presences then
overlap by 2N - |Δt| minutes; a contact is any passage at the same gate or the same site with
|Δt| <= N. Raw codes (no ID number) are traced by their digest, as the entries store them.
Tracing needs the manager or the tracer role and every query is audited, with its reason (a
tracer must give one: MissingReason). A manager or tracer of some sites traces within them only:
the subject's passages there, and contacts there (the result names those sites, and so does the
page and the audit row); an admin, or an account of every site, traces everywhere. The audit row
is that site's (site_id) when the trace searched one site or found the subject at one only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, or_, select

from server.accounts.users import Account, Role
from server.clock import shifted
from server.dashboard.reports.access import (
    NotAllowed,
    account_sites,
    concerned_site,
    may_trace,
    within_sites,
)
from server.store.audit import AuditLog
from server.store.database import Store
from server.store.tables import entries_table

DEFAULT_WINDOW_MIN = 60
MAX_VISITS = 1000  # of the subject, newest kept: a longer history is narrowed with since/until
MAX_REASON = 500  # characters of a trace's reason kept in its audit row


class MissingReason(ValueError):
    """A tracer traces only with a reason (a case number, an outbreak): it goes in the audit row."""


class Contact(BaseModel):
    """Another person's passage near one of the subject's visits."""

    event_id: str
    subject_id: str
    subject_name: str
    device_id: str
    site_id: str
    ts: datetime
    direction: str
    status: str
    same_gate: bool  # else only the same site
    offset_min: float  # contact's time minus the visit's: negative = before
    overlap_min: float  # how long their ±N presences overlapped


class Visit(BaseModel):
    """One passage of the subject, with the contacts around it."""

    event_id: str
    device_id: str
    site_id: str
    ts: datetime
    direction: str
    status: str
    contacts: list[Contact]


class ContactPerson(BaseModel):
    """Everyone met, once each: the closest contact first."""

    subject_id: str
    subject_name: str
    visits: int  # of the subject's visits this person was near
    passages: int
    max_overlap_min: float
    same_gate: bool  # at least once at the very same gate
    first_ts: datetime
    last_ts: datetime


class TracingResult(BaseModel):
    subject_id: str
    subject_name: str  # the latest name the subject's entries carry ("" for raw codes)
    window_min: int
    since: datetime | None
    until: datetime | None
    visits: list[Visit]  # oldest first
    people: list[ContactPerson]
    sites: list[str] | None = None  # the only sites searched; None: every site


def trace_contacts(
    store: Store,
    user: Account,
    subject_id: str,
    window_min: int = DEFAULT_WINDOW_MIN,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    audit: AuditLog | None = None,
    reason: str = "",
) -> TracingResult:
    """The subject's visits in [since, until) and their contacts; audited as "trace", with
    `reason` (required of a tracer: MissingReason)."""
    if not may_trace(user):
        raise NotAllowed(Role.MANAGER, "contact tracing")
    if not 1 <= window_min <= 24 * 60:
        raise ValueError("the window is 1 to 1440 minutes")
    reason = " ".join(reason.split())[:MAX_REASON]
    if user.role == Role.TRACER and not reason:
        raise MissingReason("a tracer traces with a reason (reason=...)")
    window = timedelta(minutes=window_min)
    sites = account_sites(user)
    with store.engine.connect() as conn:  # one connection for the subject's visits and contacts
        rows = _subject_passages(conn, subject_id, since, until, sites)
        visits = [_visit(conn, row, window, sites) for row in rows]
    result = TracingResult(
        subject_id=subject_id,
        subject_name=next((r["subject_name"] for r in reversed(rows) if r["subject_name"]), ""),
        window_min=window_min,
        since=since,
        until=until,
        visits=visits,
        people=_people(visits),
        sites=None if sites is None else sorted(sites),
    )
    details = {
        "window_min": window_min,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "visits": len(visits),
        "people": len(result.people),
        "sites": result.sites,
        # Tracing shows every contact unmasked: the row names them all (who looked at whom).
        "contacts": [person.subject_id for person in result.people],
    }
    if reason:
        details["reason"] = reason
    site = concerned_site(user, shown=(visit.site_id for visit in visits))
    (audit or AuditLog(store.engine)).record(user.name, "trace", subject_id, details, site_id=site)
    return result


def _subject_passages(
    conn: Connection,
    subject_id: str,
    since: datetime | None,
    until: datetime | None,
    sites: frozenset[str] | None,
) -> list[dict[str, Any]]:
    c = entries_table.c
    query = select(entries_table).where(c.subject_id == subject_id, within_sites(c.site_id, sites))
    if since is not None:
        query = query.where(c.ts >= since)
    if until is not None:
        query = query.where(c.ts < until)
    query = query.order_by(c.ts.desc(), c.event_id.desc()).limit(MAX_VISITS)
    rows = [dict(r) for r in conn.execute(query).mappings()]
    return rows[::-1]


def _visit(
    conn: Connection, visit: dict[str, Any], window: timedelta, sites: frozenset[str] | None
) -> Visit:
    c = entries_table.c
    near = or_(c.device_id == visit["device_id"], c.site_id == visit["site_id"])
    if not visit["site_id"]:  # gates without a site share no site with each other
        near = c.device_id == visit["device_id"]
    query = (
        select(entries_table)
        .where(
            near,
            within_sites(c.site_id, sites),
            c.ts >= shifted(visit["ts"], -window),
            c.ts <= shifted(visit["ts"], window),
            c.subject_id != visit["subject_id"],
            c.subject_id != "",
        )
        .order_by(c.ts, c.event_id)
    )
    found = [dict(r) for r in conn.execute(query).mappings()]
    return Visit(
        event_id=visit["event_id"],
        device_id=visit["device_id"],
        site_id=visit["site_id"],
        ts=visit["ts"],
        direction=visit["direction"],
        status=visit["status"],
        contacts=[_contact(visit, row, window) for row in found],
    )


def _contact(visit: dict[str, Any], row: dict[str, Any], window: timedelta) -> Contact:
    offset = (row["ts"] - visit["ts"]).total_seconds() / 60
    return Contact(
        event_id=row["event_id"],
        subject_id=row["subject_id"],
        subject_name=row["subject_name"],
        device_id=row["device_id"],
        site_id=row["site_id"],
        ts=row["ts"],
        direction=row["direction"],
        status=row["status"],
        same_gate=row["device_id"] == visit["device_id"],
        offset_min=round(offset, 2),
        overlap_min=round(max(0.0, 2 * window.total_seconds() / 60 - abs(offset)), 2),
    )


def _people(visits: list[Visit]) -> list[ContactPerson]:
    people: dict[str, ContactPerson] = {}
    for visit in visits:
        seen_here: set[str] = set()
        for contact in visit.contacts:
            person = people.get(contact.subject_id)
            if person is None:
                person = people[contact.subject_id] = ContactPerson(
                    subject_id=contact.subject_id,
                    subject_name=contact.subject_name,
                    visits=0,
                    passages=0,
                    max_overlap_min=0.0,
                    same_gate=False,
                    first_ts=contact.ts,
                    last_ts=contact.ts,
                )
            if contact.subject_id not in seen_here:
                person.visits += 1
                seen_here.add(contact.subject_id)
            person.passages += 1
            person.max_overlap_min = max(person.max_overlap_min, contact.overlap_min)
            person.same_gate = person.same_gate or contact.same_gate
            person.first_ts = min(person.first_ts, contact.ts)
            person.last_ts = max(person.last_ts, contact.ts)
            person.subject_name = contact.subject_name or person.subject_name
    return sorted(people.values(), key=lambda p: (-p.max_overlap_min, p.subject_id))
