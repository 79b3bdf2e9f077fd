"""Retention: entries older than the configured number of days are deleted, in small batches
(so the collector's writes never wait long behind the purge), and each purge is logged and
written to the audit log. `RetentionTask` runs it periodically in the server process."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, or_, select

from server.clock import Clock, utc_now
from server.store.audit import AuditLog
from server.store.database import Store
from server.store.tables import entries_table

log = logging.getLogger("gatescan.retention")

PURGE_BATCH = 1000
PURGE_EVERY_S = 3600.0


@dataclass(frozen=True)
class PurgeResult:
    cutoff: datetime  # entries with ts < cutoff were deleted
    deleted: int


def purge_entries(
    store: Store, retention_days: int, *, now: datetime, audit: AuditLog | None = None
) -> PurgeResult:
    """Delete entries older than `retention_days`; log and audit the purge.

    An entry's age is the gate's ts when the gate's clock was synced. Otherwise ts may be years
    off (a gate without a real-time clock boots in 1970), so only the collector's received_at,
    which is never earlier than the passage, can say that an entry is old.
    """
    if retention_days < 1:
        raise ValueError(f"retention_days must be at least 1, not {retention_days}")
    cutoff = now - timedelta(days=retention_days)
    c = entries_table.c
    old = or_(c.received_at < cutoff, and_(c.clock_synced.is_(True), c.ts < cutoff))
    deleted = 0
    while True:
        batch = select(c.event_id).where(old).limit(PURGE_BATCH)
        with store.engine.begin() as conn:
            ids = list(conn.scalars(batch))
            if ids:
                conn.execute(delete(entries_table).where(c.event_id.in_(ids)))
        deleted += len(ids)
        if len(ids) < PURGE_BATCH:
            break
    result = PurgeResult(cutoff=cutoff, deleted=deleted)
    log.info(
        "retention: deleted %d entries older than %s (%d days)",
        deleted,
        cutoff.isoformat(),
        retention_days,
    )
    details = {"deleted": deleted, "cutoff": cutoff.isoformat(), "retention_days": retention_days}
    (audit or AuditLog(store.engine)).record("system", "purge", "", details)
    return result


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
