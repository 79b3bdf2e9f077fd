"""The audit log: who looked at whom, when (unmasking, tracing, person lookups, exports,
purges), and who changed which account (`gatescan user ...`, `token ...`: action "account");
a person's own data exported or erased (`gatescan person ...`: action "person"); who released
which gate's door from the dashboard, and the releases gates report (action "door"); who
acknowledged which alert (action "alert"). Rows are only ever added. A row that concerns one
site names it (site_id): a manager reads their sites' rows
(server/dashboard/reports/audit_view.py), an admin every row."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import Engine, insert, select

from server.clock import Clock, utc_now
from server.store.tables import audit_log_table

AuditAction = Literal[
    "unmask",
    "trace",
    "search",
    "export",
    "purge",
    "login",
    "login_failed",
    "logout",
    "account",
    "gate",  # `gatescan gate add|revoke|replace|retire`, and an enrolment
    "key",  # `gatescan key rotate|retire`
    "pass",  # `gatescan pass issue|revoke`
    "list",  # `gatescan list add|remove`
    "site",  # `gatescan site rules`
    "door",  # a manager's release from the dashboard; a gate's fire alarm and button releases
    "person",  # `gatescan person export|erase` (an erasure names the ID's SHA-256 only)
    "alert",  # a manager's acknowledgement of an alert on the dashboard
    "command",  # a remote command to a gate (identify, selftest, ...) from the dashboard or CLI
    "preview",  # a preview of a gate's camera started from the dashboard (who watched which gate)
    "update",  # a rollout of a release to gates from the dashboard (one row per site it touches)
    "location",  # a self check-in location added, disabled, enabled or re-keyed (CLI, dashboard)
]


class AuditRow(BaseModel):
    id: int
    at: datetime
    actor: str  # a user name, "token:NAME", "system" or "cli:OS_USER"
    action: str
    subject: str  # whom it was about ("" when not one person)
    details: dict[str, Any]
    site_id: str = ""  # the site it concerns ("" when none, or several)


class AuditLog:
    def __init__(self, engine: Engine, *, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._clock = clock

    def record(
        self,
        actor: str,
        action: AuditAction,
        subject: str = "",
        details: dict[str, Any] | None = None,
        *,
        site_id: str = "",
    ) -> None:
        row = {
            "at": self._clock(),
            "actor": actor,
            "action": action,
            "subject": subject[:200],
            "details": details or {},
            "site_id": site_id[:200],
        }
        with self._engine.begin() as conn:
            conn.execute(insert(audit_log_table).values(row))

    def rows(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        sites: frozenset[str] | None = None,
        some_site: bool = False,
        limit: int = 100,
    ) -> list[AuditRow]:
        """The newest rows first; of `sites` only when given, of any one site with `some_site`
        (either way a row of no one site is left out: it is the admin's)."""
        table = audit_log_table
        query = select(table).order_by(table.c.id.desc()).limit(limit)
        if action is not None:
            query = query.where(table.c.action == action)
        if actor is not None:
            query = query.where(table.c.actor == actor)
        if since is not None:
            query = query.where(table.c.at >= since)
        if sites is not None:
            query = query.where(table.c.site_id.in_(sorted(sites)))
        if some_site:
            query = query.where(table.c.site_id != "")
        with self._engine.connect() as conn:
            return [AuditRow.model_validate(dict(r)) for r in conn.execute(query).mappings()]
