"""The alerts' rows (table alerts): the alert tracker's state, kept across a restart (issue 16).

    kept = AlertRows(store.engine)
    tracker.restore(kept.live())                    # at start: what was open, or being watched
    kept.save(tracker_state, cleared=[(key, at)])   # after each look

`save` writes what the tracker holds: a row per problem seen and not cleared, its texts and
times; a row whose alert cleared gets its `cleared_at` and stays (the dashboard's "recently
cleared"); a row whose problem went before it lasted is deleted. It never writes the
acknowledgement: the dashboard does (server/dashboard/reports/alerts.py), in another process
perhaps, and the tracker's next save must not undo it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import Engine, delete, insert, select, update

from server.store.tables import alerts_table


class AlertRow(BaseModel):
    id: int
    key: str
    kind: str  # offline, fault, clock, outbox, dead_letters, logins, expiry
    site_id: str  # "" for the installation's own (dead letters, logins, its CA)
    device_id: str
    for_s: float
    summary_en: str
    summary_vi: str
    first_seen: datetime
    last_seen: datetime
    opened_at: datetime | None  # None: not yet lasted its for_s (nobody told)
    cleared_at: datetime | None
    acknowledged_by: str
    acknowledged_at: datetime | None


class TrackedAlert(BaseModel):
    """What the tracker keeps of one alert (server/alerts/tracker.py: Alert), for `save`."""

    key: str
    kind: str
    site_id: str
    device_id: str
    for_s: float
    summary_en: str
    summary_vi: str
    first_seen: datetime
    last_seen: datetime
    opened_at: datetime | None


class AlertRows:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def live(self) -> list[AlertRow]:
        """The rows not cleared (opened or still being watched), oldest first."""
        query = (
            select(alerts_table)
            .where(alerts_table.c.cleared_at.is_(None))
            .order_by(alerts_table.c.first_seen, alerts_table.c.id)
        )
        with self._engine.connect() as conn:
            return [AlertRow.model_validate(dict(row)) for row in conn.execute(query).mappings()]

    def save(self, alerts: Iterable[TrackedAlert], cleared: Iterable[tuple[str, datetime]]) -> None:
        """The tracker's state after a look, in one transaction: `alerts` all it holds,
        `cleared` the keys it cleared on that look and when."""
        table = alerts_table
        held = {alert.key: alert for alert in alerts}
        with self._engine.begin() as conn:
            rows = conn.execute(select(table.c.id, table.c.key).where(table.c.cleared_at.is_(None)))
            live: dict[str, list[int]] = {}
            for row_id, key in rows:
                live.setdefault(key, []).append(row_id)
            for key, at in cleared:
                for row_id in live.pop(key, []):
                    conn.execute(update(table).where(table.c.id == row_id).values(cleared_at=at))
            for key, alert in held.items():
                values = alert.model_dump()
                ids = live.pop(key, [])
                if ids:
                    conn.execute(update(table).where(table.c.id.in_(ids)).values(values))
                else:
                    conn.execute(insert(table).values(**values, acknowledged_by=""))
            gone = [row_id for ids in live.values() for row_id in ids]
            if gone:  # went before it lasted (or the tracker no longer holds it)
                conn.execute(delete(table).where(table.c.id.in_(gone)))
