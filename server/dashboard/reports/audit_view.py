"""The audit log as an account may read it: an admin every row; a manager the rows of their own
sites (each row names the one site it concerns, or none: server/store/audit.py), never a row of
no site (logins, account changes, looks across several sites: the admin's); a manager of every
site the rows of any one site. Viewers and tracers read none."""

from __future__ import annotations

from datetime import datetime

from server.accounts.users import Account, Role
from server.dashboard.reports.access import NotAllowed, account_sites
from server.store.audit import AuditLog, AuditRow


def audit_rows(
    audit: AuditLog,
    user: Account,
    *,
    action: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[AuditRow]:
    """The newest rows first, of what `user` may read."""
    if user.role < Role.MANAGER:
        raise NotAllowed(Role.MANAGER, "the audit log")
    sites = account_sites(user)
    return audit.rows(
        action=action,
        actor=actor,
        since=since,
        sites=sites,
        some_site=user.role < Role.ADMIN,
        limit=limit,
    )
