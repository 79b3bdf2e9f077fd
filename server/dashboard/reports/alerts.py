"""The alerts as the dashboard shows them (issue 16): those open and those cleared in the last
day, of the account's sites only, and a manager's acknowledgement of one.

The rows are the alert loop's (server/alerts/, kept in server/store/alerts.py), read here so
that `gatescan web` in a process of its own shows them too. An alert of the installation itself
(dead letters, failed logins, its CA: site "") is shown to the accounts that hold every site.
An alert of a site the account does not hold is, to it, no alert at all (404, not 403: its id
tells nothing).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, func, select, update

from server.accounts.users import Account, Role
from server.dashboard.reports.access import NotAllowed, account_sites, within_sites
from server.store.alerts import AlertRow
from server.store.database import Store
from server.store.tables import alerts_table

RECENTLY = timedelta(hours=24)  # how long a cleared alert stays on the page
MAX_LISTED = 500


class NoSuchAlert(LookupError):
    """No open alert has that id among the account's sites (the web layer answers 404)."""


class AlertList(BaseModel):
    open: list[AlertRow]  # oldest first
    cleared: list[AlertRow]  # in the last 24 hours, latest first
    sites: list[str] | None  # the sites shown; None: every site


def _opened(sites: frozenset[str] | None) -> ColumnElement[bool]:
    """Told (opened), of `sites`."""
    c = alerts_table.c
    return and_(c.opened_at.is_not(None), within_sites(c.site_id, sites))


def alerts_for(store: Store, user: Account, now: datetime) -> AlertList:
    sites = account_sites(user)
    c = alerts_table.c
    with store.engine.connect() as conn:
        open_rows = conn.execute(
            select(alerts_table)
            .where(_opened(sites), c.cleared_at.is_(None))
            .order_by(c.opened_at, c.id)
            .limit(MAX_LISTED)
        ).mappings()
        opened = [AlertRow.model_validate(dict(row)) for row in open_rows]
        cleared_rows = conn.execute(
            select(alerts_table)
            .where(_opened(sites), c.cleared_at >= now - RECENTLY)
            .order_by(c.cleared_at.desc(), c.id.desc())
            .limit(MAX_LISTED)
        ).mappings()
        cleared = [AlertRow.model_validate(dict(row)) for row in cleared_rows]
    return AlertList(open=opened, cleared=cleared, sites=None if sites is None else sorted(sites))


def open_alert_count(store: Store, user: Account) -> tuple[int, int]:
    """(open, of them not acknowledged) among the account's sites: the fleet page's badge."""
    c = alerts_table.c
    query = select(func.count(), func.count().filter(c.acknowledged_at.is_(None))).where(
        _opened(account_sites(user)), c.cleared_at.is_(None)
    )
    with store.engine.connect() as conn:
        total, waiting = conn.execute(query).one()
    return int(total), int(waiting)


def acknowledge_alert(
    store: Store, user: Account, alert_id: int, now: datetime
) -> tuple[AlertRow, bool]:
    """Mark an open alert of the account's sites as acknowledged by `user` (a manager's): the
    alert, and whether this was its first acknowledgement (one acknowledged before keeps its
    first). NoSuchAlert if there is none."""
    if user.role < Role.MANAGER:
        raise NotAllowed(Role.MANAGER, "acknowledging an alert")
    c = alerts_table.c
    mine = and_(c.id == alert_id, _opened(account_sites(user)), c.cleared_at.is_(None))
    with store.engine.begin() as conn:
        done = conn.execute(
            update(alerts_table)
            .where(mine, c.acknowledged_at.is_(None))
            .values(acknowledged_by=user.name, acknowledged_at=now)
        )
        row = conn.execute(select(alerts_table).where(mine)).mappings().first()
    if row is None:
        raise NoSuchAlert(alert_id)
    return AlertRow.model_validate(dict(row)), done.rowcount > 0
