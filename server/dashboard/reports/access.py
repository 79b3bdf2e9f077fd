"""What the dashboard and the API show: fleet status, entries, contact tracing, occupancy.

Each report reads the store's tables through its engine and returns typed values (pydantic
models, so the API serialises them as they are). Personal data leaves here masked unless the
asking account's role allows otherwise, and every look at a person is written to the audit log.

An account holds its role on some sites or on every one (Account.sites, None: every site). Each
report puts that into its query, `site_id IN (...)`: what another site keeps is never fetched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, true

from server.accounts.users import Account, Role


class NotAllowed(PermissionError):
    """The asking account's role lacks the right (the web layer answers 403)."""

    def __init__(self, needed: Role, what: str) -> None:
        super().__init__(f"{what} needs the {needed.label} role")
        self.needed = needed


class OtherSite(NotAllowed):
    """The thing asked about belongs to a site the account holds no role on (a 403 too)."""

    def __init__(self, what: str) -> None:
        PermissionError.__init__(self, f"{what} belongs to a site this account has no role on")
        self.needed = Role.ADMIN


def within_sites(column: Any, sites: frozenset[str] | None) -> ColumnElement[bool]:
    """The WHERE clause that keeps a query to `sites` (None: no limit)."""
    if sites is None:
        return true()
    return column.in_(sorted(sites))


def account_sites(user: Account) -> frozenset[str] | None:
    """The sites a report shows `user`: None (every site) for an admin, whatever was stored."""
    return None if user.role >= Role.ADMIN else user.sites


def may_trace(user: Account) -> bool:
    """Contact tracing: a manager's right, and a tracer's only one (see Role)."""
    return user.role >= Role.MANAGER or user.role == Role.TRACER


def concerned_site(user: Account, asked: str | None = None, shown: Iterable[str] = ()) -> str:
    """The one site an audited look concerns, for its audit row's site_id ("" when none or
    several: the row is then the admin's alone). The account's only site, else the site it
    asked for (if it holds it), else the only site of what it was shown."""
    sites = account_sites(user)
    if sites is not None and len(sites) == 1:
        return next(iter(sites))
    if asked and (sites is None or asked in sites):
        return asked
    seen = set(shown)
    return seen.pop() if len(seen) == 1 else ""
