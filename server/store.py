"""The collector's database: entries, devices and dead letters, through SQLAlchemy Core.

SQLite (WAL) is the embedded default; the SQL stays portable so PostgreSQL can take over when one
machine is not enough. Only the PRAGMAs are SQLite-specific, and they run only on SQLite.
Every timestamp is stored and returned as timezone-aware UTC. The tables are in server/tables.py.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime
from sqlalchemy import (
    Connection,
    Engine,
    Select,
    Table,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError

from protocol import Event, Status, Telemetry
from server.tables import (
    add_missing_columns,
    dead_letters_table,
    devices_table,
    entries_table,
    metadata,
)

log = logging.getLogger("gatescan.store")

# A dead letter keeps at most this much of the payload: every message the collector could have
# accepted is kept whole; of a larger one, the caller may keep less (see Store.dead_letter).
DEAD_LETTER_PAYLOAD_BYTES = 64 * 1024
_DETAIL_CHARS = 1000
# Ids per `IN (...)` lookup: well under SQLite's bound-parameter limit.
_LOOKUP_CHUNK = 500
# How often a batch is retried when another writer stored one of its ids in between.
_INSERT_ATTEMPTS = 3


_ENTRY_COLUMNS = (*Event.model_fields, "received_at")


@dataclass(frozen=True)
class StoredEvents:
    """The outcome of one `add_events` call: every id in `ids` is committed and may be acked."""

    ids: tuple[str, ...]  # each id of the batch once, in the order given
    new: tuple[str, ...]  # inserted by this call
    duplicate_count: int  # events of the batch already stored (a resend) or repeated in it


class StoredEntry(Event):
    """An entry as stored: the gate's Event, plus when the collector received it (its clock)."""

    received_at: AwareDatetime

    @property
    def event(self) -> Event:
        """The Event alone, as the gate sent it."""
        return Event.model_validate(self.model_dump(exclude={"received_at"}))


@dataclass(frozen=True)
class DeviceRecord:
    device_id: str
    state: str | None
    status_ts: datetime | None
    status_received_at: datetime | None
    version: str
    boot_id: str
    faults: list[str]
    last_seen: datetime | None
    telemetry: dict[str, Any] | None
    telemetry_at: datetime | None


@dataclass(frozen=True)
class DeadLetter:
    id: int
    received_at: datetime
    topic: str
    reason: str
    detail: str
    payload: bytes
    payload_size: int
    payload_sha256: str | None  # None on rows from before the column
    repeats: int  # the same message refused again since (resends), not stored again
    last_received_at: datetime | None  # when the latest repeat came


def database_url(url_or_path: str | Path) -> URL:
    """A SQLAlchemy URL from a URL ("sqlite:///x.db", "postgresql+psycopg://...") or a file path."""
    text = str(url_or_path)
    if "://" in text:
        return make_url(text)
    return URL.create("sqlite", database=str(Path(text).expanduser().resolve()))


def _apply_sqlite_pragmas(dbapi_connection: Any, busy_timeout_ms: int) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL: readers (export, dashboard) never block the collector's writes, nor it them.
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL, not NORMAL: in WAL mode NORMAL survives a process crash but may lose the last
        # commits on power loss, and our ack tells the gate it may delete the event from its
        # outbox. Durability is the promise, so every commit syncs the WAL; batching many events
        # per commit (issue 4) is how throughput is bought back, not a weaker sync.
        cursor.execute("PRAGMA synchronous=FULL")
        # Wait for a lock held by another process (an export, a second tool) instead of failing.
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


class Store:
    """Entries, devices and dead letters. Safe to share between threads (one engine, a pool)."""

    def __init__(self, url: str | Path, *, busy_timeout_ms: int = 5000) -> None:
        self.url = database_url(url)
        self._engine: Engine = create_engine(self.url)
        if self._engine.dialect.name == "sqlite":

            def on_connect(dbapi_connection: Any, _record: Any) -> None:
                _apply_sqlite_pragmas(dbapi_connection, busy_timeout_ms)

            event.listen(self._engine, "connect", on_connect)
        metadata.create_all(self._engine)
        for column in add_missing_columns(self._engine):
            log.info("database upgraded: added column %s", column)

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writes -------------------------------------------------------------------------------

    def add_events(
        self,
        events: Sequence[Event],
        received_at: datetime,
        *,
        before_commit: Callable[[], None] = lambda: None,
    ) -> StoredEvents:
        """Store events in one transaction, skipping ids already stored; committed on return.

        `before_commit` runs inside the transaction, after the inserts and before the commit:
        the collector's failpoint for "killed with the rows written but not committed". If it
        raises, the transaction is rolled back and the exception propagates.
        """
        if received_at.tzinfo is None:
            raise ValueError(f"naive datetime {received_at!r}: received_at must be aware (UTC)")
        for attempt in range(1, _INSERT_ATTEMPTS + 1):
            try:
                return self._insert_new_events(events, received_at, before_commit)
            except IntegrityError:
                # Another writer stored one of these ids between our lookup and our insert.
                # Rolled back: look again, and the duplicate is now seen and skipped.
                if attempt == _INSERT_ATTEMPTS:
                    raise
                log.info("event id stored concurrently; retrying the batch (attempt %d)", attempt)
        raise AssertionError("unreachable")

    def _insert_new_events(
        self, events: Sequence[Event], received_at: datetime, before_commit: Callable[[], None]
    ) -> StoredEvents:
        unique = list({e.event_id: e for e in events}.values())
        # A portable dedupe: look the ids up, insert the rest. (ON CONFLICT DO NOTHING would do
        # it in one statement, but differently per dialect; the lookup costs one indexed query.)
        with self._engine.begin() as conn:
            existing = self._existing_event_ids(conn, [e.event_id for e in unique])
            fresh = [e for e in unique if e.event_id not in existing]
            if fresh:
                conn.execute(insert(entries_table), [_entry_row(e, received_at) for e in fresh])
            before_commit()
        return StoredEvents(
            ids=tuple(e.event_id for e in unique),
            new=tuple(e.event_id for e in fresh),
            duplicate_count=len(events) - len(fresh),
        )

    @staticmethod
    def _existing_event_ids(conn: Connection, ids: list[str]) -> set[str]:
        found: set[str] = set()
        column = entries_table.c.event_id
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            chunk = ids[start : start + _LOOKUP_CHUNK]
            found.update(conn.scalars(select(column).where(column.in_(chunk))))
        return found

    def record_status(self, device_id: str, status: Status, received_at: datetime) -> None:
        """Remember a device's (retained) online/offline status and what it reported with it."""
        self._upsert_device(
            device_id,
            {
                "state": status.state,
                "status_ts": status.ts,
                "status_received_at": received_at,
                "version": status.version,
                "boot_id": status.boot_id,
                "faults": list(status.faults),
            },
        )

    def record_telemetry(self, device_id: str, telemetry: Telemetry, received_at: datetime) -> None:
        """Keep only a device's latest telemetry; it also proves the device is alive now."""
        self._upsert_device(
            device_id,
            {
                "telemetry": telemetry.model_dump(mode="json"),
                "telemetry_at": received_at,
                "last_seen": received_at,
            },
        )

    def _upsert_device(self, device_id: str, values: dict[str, Any]) -> None:
        # Portable upsert: update, insert when nothing was there, update again if another writer
        # inserted the row in between.
        table = devices_table
        for _ in range(2):
            try:
                with self._engine.begin() as conn:
                    where = table.c.device_id == device_id
                    if conn.execute(update(table).where(where).values(values)).rowcount == 0:
                        conn.execute(insert(table).values(device_id=device_id, **values))
                return
            except IntegrityError:
                continue
        raise RuntimeError(f"could not upsert device {device_id!r}")

    def dead_letter(
        self,
        topic: str,
        payload: bytes,
        reason: str,
        detail: str,
        received_at: datetime,
        *,
        keep_bytes: int = DEAD_LETTER_PAYLOAD_BYTES,
    ) -> bool:
        """Keep a message the collector could not accept, so an operator can see why: its
        topic, reason, detail, size, and its first `keep_bytes` bytes (at most 64 KiB).

        The same message again (same topic, payload and reason: a gate's resend) only counts a
        repeat on the row it already has. Returns True if a row was added, False for a repeat.
        """
        table = dead_letters_table
        digest = hashlib.sha256(payload).hexdigest()
        same = (table.c.payload_sha256 == digest) & (table.c.topic == topic)
        with self._engine.begin() as conn:
            earlier = conn.scalar(
                select(table.c.id).where(same, table.c.reason == reason[:32]).limit(1)
            )
            if earlier is not None:
                repeated = {"repeats": table.c.repeats + 1, "last_received_at": received_at}
                conn.execute(update(table).where(table.c.id == earlier).values(repeated))
                return False
            keep = max(0, min(keep_bytes, DEAD_LETTER_PAYLOAD_BYTES))
            row = {
                "received_at": received_at,
                "topic": topic,
                "reason": reason[:32],
                "detail": detail[:_DETAIL_CHARS],
                "payload": bytes(payload[:keep]),
                "payload_size": len(payload),
                "payload_sha256": digest,
                "repeats": 0,
            }
            conn.execute(insert(table).values(row))
        return True

    # --- reads --------------------------------------------------------------------------------

    def entries(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        device_id: str | None = None,
    ) -> Iterator[StoredEntry]:
        """Entries with since <= ts < until, oldest first (ties by event_id), streamed.

        `ts` is the gate's clock, which may be wrong (clock_synced false): to see one gate's
        events in the order it made them, use `device_events`.
        """
        query = select(entries_table).order_by(entries_table.c.ts, entries_table.c.event_id)
        if since is not None:
            query = query.where(entries_table.c.ts >= since)
        if until is not None:
            query = query.where(entries_table.c.ts < until)
        if device_id is not None:
            query = query.where(entries_table.c.device_id == device_id)
        return self._stream_entries(query)

    def device_events(self, device_id: str) -> Iterator[StoredEntry]:
        """One gate's entries in the order it made them, whatever its clock said.

        Within a boot, by `seq` (the gate's counter never repeats and survives restarts). Boots
        in the order their first event arrived here (the collector's own `received_at`), ties by
        their lowest seq: a gate sends its outbox lowest seq first, so an older boot's events
        always start arriving before a newer boot's, even when a lost journal restarted seq.
        """
        entries = entries_table.c
        boots = (
            select(
                entries.boot_id,
                func.min(entries.received_at).label("first_received"),
                func.min(entries.seq).label("first_seq"),
            )
            .where(entries.device_id == device_id)
            .group_by(entries.boot_id)
            .subquery()
        )
        query = (
            select(entries_table)
            .join(boots, boots.c.boot_id == entries.boot_id)
            .where(entries.device_id == device_id)
            .order_by(boots.c.first_received, boots.c.first_seq, entries.boot_id, entries.seq)
        )
        return self._stream_entries(query)

    def _stream_entries(self, query: Select[Any]) -> Iterator[StoredEntry]:
        with self._engine.connect() as conn:
            for row in conn.execution_options(yield_per=1000).execute(query).mappings():
                yield StoredEntry.model_validate({name: row[name] for name in _ENTRY_COLUMNS})

    def count_entries(self) -> int:
        return self._count(entries_table)

    def dead_letter_count(self) -> int:
        """How many messages were refused, repeats included (`dead_letters()` lists the rows)."""
        refused = func.coalesce(func.sum(dead_letters_table.c.repeats + 1), 0)
        with self._engine.connect() as conn:
            return int(conn.scalar(select(refused)) or 0)

    def dead_letter_counts(self) -> dict[str, int]:
        """How many messages were refused, by reason (too_large, not_json, schema, ...),
        repeats included."""
        reason = dead_letters_table.c.reason
        refused = func.sum(dead_letters_table.c.repeats + 1)
        query = select(reason, refused).group_by(reason).order_by(reason)
        with self._engine.connect() as conn:
            return {str(name): int(count) for name, count in conn.execute(query)}

    def _count(self, table: Table) -> int:
        with self._engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(table)) or 0)

    def devices(self) -> list[DeviceRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(devices_table).order_by(devices_table.c.device_id))
            return [DeviceRecord(**row) for row in rows.mappings()]

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The most recent dead letters, newest first."""
        query = select(dead_letters_table).order_by(dead_letters_table.c.id.desc()).limit(limit)
        with self._engine.connect() as conn:
            return [DeadLetter(**row) for row in conn.execute(query).mappings()]

    def journal_mode(self) -> str | None:
        """SQLite's journal mode ("wal"), or None on other databases."""
        if self._engine.dialect.name != "sqlite":
            return None
        with self._engine.connect() as conn:
            return str(conn.exec_driver_sql("PRAGMA journal_mode").scalar())


def _entry_row(event: Event, received_at: datetime) -> dict[str, Any]:
    row = event.model_dump(mode="python")
    for name in ("direction", "status", "reason", "credential_type"):
        row[name] = str(row[name])
    row["received_at"] = received_at
    return row
