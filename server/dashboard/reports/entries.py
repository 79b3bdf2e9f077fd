"""Stored entries for people: filtered, paginated, masked unless unmasking is allowed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Select, func, or_, select

from protocol.verdicts import VerdictStatus
from server.accounts.users import Account, Role
from server.dashboard.reports.access import (
    NotAllowed,
    account_sites,
    concerned_site,
    within_sites,
)
from server.dashboard.reports.masking import mask_id, mask_name, mask_text
from server.store.audit import AuditLog
from server.store.database import Store
from server.store.tables import entries_table

MAX_PAGE_SIZE = 500
MAX_PAGE = 1_000_000  # past it the row offset would overflow the database's integers


@dataclass(frozen=True)
class EntryFilter:
    """Which entries to show; None means any. `person` is an ID number (exact) or part of a name;
    `sites` the asking account's sites (set by `limited_to`, never from a form)."""

    site_id: str | None = None
    device_id: str | None = None
    since: datetime | None = None  # ts >= since
    until: datetime | None = None  # ts < until
    status: VerdictStatus | None = None
    person: str | None = None
    sites: frozenset[str] | None = None

    def limited_to(self, user: Account) -> EntryFilter:
        """This filter within the sites `user` holds a role on."""
        return replace(self, sites=account_sites(user))

    def as_details(self) -> dict[str, Any]:
        """The filter as audit-log details (times as ISO text, sites as a sorted list)."""
        return {name: _detail(value) for name, value in vars(self).items() if value is not None}


def _detail(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, frozenset):
        return sorted(value)
    return str(value)


class EntryRow(BaseModel):
    """One entry as shown: `masked` tells whether the personal fields are masked."""

    event_id: str
    device_id: str
    site_id: str
    seq: int
    boot_id: str
    ts: datetime
    received_at: datetime
    clock_synced: bool
    direction: str
    status: str
    reason: str
    credential_type: str
    subject_id: str
    subject_name: str
    code_sha256: str
    code_length: int
    code_text: str | None
    code_text_withheld: bool
    masked: bool = False

    def masked_copy(self) -> EntryRow:
        return self.model_copy(
            update={
                "subject_id": mask_id(self.subject_id),
                "subject_name": mask_name(self.subject_name),
                # For a raw code the digest is its identity: as personal as the ID number.
                "code_sha256": mask_id(self.code_sha256),
                "code_text": mask_text(self.code_text),
                "masked": True,
            }
        )


class EntryPage(BaseModel):
    items: list[EntryRow]
    page: int  # from 1
    page_size: int
    total: int  # entries matching the filter, all pages

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def filtered_query(entry_filter: EntryFilter) -> Select[Any]:
    """SELECT entries matching the filter (no order, no limit)."""
    c = entries_table.c
    query = select(entries_table).where(within_sites(c.site_id, entry_filter.sites))
    if entry_filter.site_id:
        query = query.where(c.site_id == entry_filter.site_id)
    if entry_filter.device_id:
        query = query.where(c.device_id == entry_filter.device_id)
    if entry_filter.since is not None:
        query = query.where(c.ts >= entry_filter.since)
    if entry_filter.until is not None:
        query = query.where(c.ts < entry_filter.until)
    if entry_filter.status is not None:
        query = query.where(c.status == str(entry_filter.status))
    if entry_filter.person:
        person = entry_filter.person.strip()
        name_part = "%" + person.replace("%", "").replace("_", "") + "%"
        query = query.where(or_(c.subject_id == person, c.subject_name.ilike(name_part)))
    return query


def find_entries(
    store: Store, entry_filter: EntryFilter, page: int = 1, page_size: int = 50
) -> EntryPage:
    """One page of matching entries, newest first, unmasked (callers mask: see view_entries)."""
    page = min(max(1, page), MAX_PAGE)
    page_size = min(max(1, page_size), MAX_PAGE_SIZE)
    query = filtered_query(entry_filter)
    c = entries_table.c
    ordered = query.order_by(c.ts.desc(), c.event_id.desc())
    ordered = ordered.limit(page_size).offset((page - 1) * page_size)
    with store.engine.connect() as conn:
        total = conn.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = [EntryRow.model_validate(dict(r)) for r in conn.execute(ordered).mappings()]
    return EntryPage(items=rows, page=page, page_size=page_size, total=int(total))


def iter_entries(store: Store, entry_filter: EntryFilter) -> Iterator[EntryRow]:
    """Every matching entry, oldest first, unmasked, streamed (for exports)."""
    c = entries_table.c
    query = filtered_query(entry_filter).order_by(c.ts, c.event_id)
    with store.engine.connect() as conn:
        for row in conn.execution_options(yield_per=1000).execute(query).mappings():
            yield EntryRow.model_validate(dict(row))


def check_unmask(user: Account, what: str = "unmasking") -> None:
    if user.role < Role.MANAGER:
        raise NotAllowed(Role.MANAGER, what)


def check_person_lookup(user: Account) -> None:
    """Filtering by person is a look at one person, masked or not: their times and gates are
    their movements. A viewer watches the site, not people (see Role)."""
    check_unmask(user, "looking a person up")


def view_entries(
    store: Store,
    user: Account,
    entry_filter: EntryFilter,
    page: int = 1,
    unmask: bool = False,
    *,
    page_size: int = 50,
    audit: AuditLog | None = None,
) -> EntryPage:
    """A page of entries as `user` may see it: of the sites they hold a role on, masked, or
    unmasked for a manager (audited, with the sites it was limited to).

    A search for a person needs the manager role and is audited too, masked or not: it is a
    look at that person. An unmasking's row names everyone it showed (who looked at whom).
    """
    if unmask:
        check_unmask(user)
    if entry_filter.person:
        check_person_lookup(user)
    entry_filter = entry_filter.limited_to(user)
    audit = audit or AuditLog(store.engine)
    result = find_entries(store, entry_filter, page, page_size)
    details: dict[str, Any] = {
        "filter": entry_filter.as_details(),
        "page": result.page,
        "shown": len(result.items),
    }
    # The row is a site's when the look was at one site's entries (the per-site audit view): by
    # the filter, never by the page shown (a page of one site's rows may be of a wider look).
    site = concerned_site(user, entry_filter.site_id)
    if unmask:
        details["subjects"] = sorted({row.subject_id for row in result.items if row.subject_id})
        audit.record(user.name, "unmask", entry_filter.person or "", details, site_id=site)
    elif entry_filter.person:
        audit.record(user.name, "search", entry_filter.person, details, site_id=site)
    if not unmask:
        result.items = [row.masked_copy() for row in result.items]
    return result
