"""Retention: entries older than the configured number of days are deleted, and with them the
dead letters (the collector's refused messages, a gate's rejected events and conflicts among
them: their first 4 KiB may hold names and ID numbers), the audit log's rows of that age and
the alerts cleared before it, in small batches (so the collector's writes never wait long
behind the purge); each purge is logged and written to the audit log. `RetentionTask` runs it
periodically in the server process."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, delete, or_, select

from server.clock import Clock, utc_now
from server.store.audit import AuditLog
from server.store.database import Store
from server.store.tables import (
    alerts_table,
    audit_log_table,
    dead_letters_table,
    entries_table,
)

log = logging.getLogger("gatescan.retention")

PURGE_BATCH = 1000
PURGE_EVERY_S = 3600.0


@dataclass(frozen=True)
class PurgeResult:
    cutoff: datetime  # entries with ts < cutoff were deleted
    deleted: int  # entries
    dead_letters: int = 0  # rows last refused before the cutoff
    audit_rows: int = 0  # audit rows written before the cutoff
    alerts: int = 0  # alerts cleared before the cutoff


def purge_entries(
    store: Store, retention_days: int, *, now: datetime, audit: AuditLog | None = None
) -> PurgeResult:
    """Delete entries, dead letters and audit rows older than `retention_days`; log and audit
    the purge (its own audit row is written after, so it stays).

    An entry's age is the gate's ts when the gate's clock was synced. Otherwise ts may be years
    off (a gate without a real-time clock boots in 1970), so only the collector's received_at,
    which is never earlier than the passage, can say that an entry is old. A dead letter's age
    is its latest refusal's (a repeat refreshes it); an audit row's, when it was written.
    """
    if retention_days < 1:
        raise ValueError(f"retention_days must be at least 1, not {retention_days}")
    cutoff = now - timedelta(days=retention_days)
    c = entries_table.c
    old = or_(c.received_at < cutoff, and_(c.clock_synced.is_(True), c.ts < cutoff))
    deleted = _purge(store, entries_table, c.event_id, old)
    letters = dead_letters_table.c
    last_refused = or_(letters.last_received_at.is_(None), letters.last_received_at < cutoff)
    old_letters = and_(letters.received_at < cutoff, last_refused)  # by ix_..._received_at
    dead_letters = _purge(store, dead_letters_table, letters.id, old_letters)
    audit_table = audit_log_table.c
    audit_rows = _purge(store, audit_log_table, audit_table.id, audit_table.at < cutoff)
    cleared = alerts_table.c.cleared_at < cutoff  # an open alert stays, however old
    alerts = _purge(store, alerts_table, alerts_table.c.id, cleared)
    result = PurgeResult(cutoff, deleted, dead_letters, audit_rows, alerts)
    log.info(
        "retention: deleted %d entries older than %s (%d days), %d dead letters, %d audit rows,"
        " %d alerts",
        deleted,
        cutoff.isoformat(),
        retention_days,
        dead_letters,
        audit_rows,
        alerts,
    )
    details = {
        "deleted": deleted,
        "dead_letters": dead_letters,
        "audit_rows": audit_rows,
        "alerts": alerts,
        "cutoff": cutoff.isoformat(),
        "retention_days": retention_days,
    }
    (audit or AuditLog(store.engine)).record("system", "purge", "", details)
    return result


def _purge(store: Store, table: Table, key: ColumnElement[Any], old: ColumnElement[bool]) -> int:
    """Delete the rows `old` selects, PURGE_BATCH per transaction; how many were deleted."""
    deleted = 0
    while True:
        batch = select(key).where(old).limit(PURGE_BATCH)
        with store.engine.begin() as conn:
            keys = list(conn.scalars(batch))
            if keys:
                conn.execute(delete(table).where(key.in_(keys)))
        deleted += len(keys)
        if len(keys) < PURGE_BATCH:
            return deleted


class RetentionTask:
    """Purges now and then every `every_s` seconds until stopped (a daemon thread)."""

    def __init__(
        self,
        store: Store,
        retention_days: int,
        *,
        every_s: float = PURGE_EVERY_S,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._days = retention_days
        self._every = every_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                purge_entries(self._store, self._days, now=self._clock())
            except Exception:  # the next round tries again; the server keeps serving
                log.exception("retention purge failed")
            self._stop.wait(self._every)
