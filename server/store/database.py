"""The collector's database: entries, devices and dead letters, through SQLAlchemy Core.

SQLite (WAL) is the embedded default; the SQL stays portable so PostgreSQL can take over when one
machine is not enough (the test suite runs the store on both). Only the PRAGMAs are
SQLite-specific, and they run only on SQLite; a PostgreSQL session is set to UTC.
Every timestamp is stored and returned as timezone-aware UTC. The tables are in
server/store/tables.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime
from sqlalchemy import Engine, Select, Table, create_engine, event, func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.pool import QueuePool

from protocol.messages import Event, Status, Telemetry
from server.store.schema import migrate
from server.store.tables import (
    DEAD_LETTER_PAYLOAD_BYTES,
    dead_letters_table,
    devices_table,
    entries_table,
)
from server.store.writes import (
    ENTRY_COLUMNS,
    BatchResult,
    DeadLetterRecord,
    DeviceUpdate,
    EntryRow,
    EntryRows,
    StoredEvents,
    WriteBatch,
    write_batch,
)

log = logging.getLogger("gatescan.store")

CACHE_KIB = 64 * 1024  # SQLite's page cache per connection
WAL_AUTOCHECKPOINT_PAGES = 1_000  # pages of WAL (about 4 MB) between automatic checkpoints

__all__ = [
    "DeadLetter",
    "DeviceRecord",
    "Store",
    "StoredEntry",
    "database_url",
    "status_update",
    "telemetry_update",
]


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
    site_id: str = ""  # where the gate stands, from its latest status ("" from an older gate)
    location: str = ""
    direction: str = ""


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
    event_id: str | None = None  # the event it names, if any (None on rows from before)


def database_url(url_or_path: str | Path | URL) -> URL:
    """A SQLAlchemy URL from a URL ("sqlite:///x.db", "postgresql+psycopg://...") or a file path."""
    if isinstance(url_or_path, URL):
        return url_or_path  # as given: its text hides the password
    text = str(url_or_path)
    if "://" in text:
        return make_url(text)
    return URL.create("sqlite", database=str(Path(text).expanduser().resolve()))


def _apply_sqlite_pragmas(dbapi_connection: Any, busy_timeout_ms: int) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL: readers (export, dashboard) never block the collector's writes, nor it them.
        _into_wal(cursor, busy_timeout_ms)
        # FULL, not NORMAL: in WAL mode NORMAL survives a process crash but may lose the last
        # commits on power loss, and our ack tells the gate it may delete the event from its
        # outbox. Durability is the promise, so every commit syncs the WAL; batching many events
        # per commit (issue 4) is how throughput is bought back, not a weaker sync.
        cursor.execute("PRAGMA synchronous=FULL")
        # Checkpoint (copy the WAL back into the database file, and fsync it) every 4 MB of WAL,
        # SQLite's default, said here because it was once 40 MB: while random event ids and a
        # gate-first index spread every batch over the indexes, a small WAL meant a checkpoint
        # at nearly every commit. With keys that grow with time (server/store/tables.py) a commit
        # writes few pages, and the checkpoint runs inside the commit that crosses the mark, so
        # a smaller one keeps that commit's acks from waiting long (bench/ingest_bench.py at 500
        # gates and a million entries: 40 MB ones stalled a batch 0.1-0.25 s every 4 s; 4 MB
        # ones at most about 0.08 s, for the same CPU per stored event).
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        # Keep up to 64 MiB of pages in memory rather than SQLite's 2 MiB: a stored event may add
        # a key at a random place in an index (the per-person one; event ids from an older gate,
        # which made random ones), and with 2 MiB nearly each of those pages is read again from
        # the OS at every batch (bench/ingest_bench.py, with random ids: about a fifth less CPU
        # per stored event at a few hundred thousand entries). Pages are taken as used.
        cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        # Wait for a lock held by another process (an export, a second tool) instead of failing.
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _into_wal(cursor: Any, busy_timeout_ms: int) -> None:
    """PRAGMA journal_mode=WAL, tried again while another process switches the same file: of
    two connections switching a database not yet in WAL (a new file, a restored backup: its
    copy is journal_mode DELETE) at the same moment, one gets "database is locked" at once,
    without waiting out its busy timeout (SQLite's way out of a deadlock). Seen with two
    processes opening such a file together (tests/server/store/test_migration_races.py)."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _utc_session(dbapi_connection: Any, _record: Any) -> None:
    """PostgreSQL hands a timestamptz over in the session's time zone, the server's by default:
    in UTC instead, so a time at the end of the calendar (a gate's clock may say 9999-12-31 23:59
    UTC) is not moved past year 9999 on its way out (a server at +07:00 made it year 10000,
    which Python cannot hold). Committed, so the pool's rollback on return keeps it."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET TIME ZONE 'UTC'")
    finally:
        cursor.close()
    dbapi_connection.commit()


def _pool_options(url: URL) -> dict[str, Any]:
    """Last in, first out where the pool is a queue (a database file or server; SQLite in memory
    has one connection per thread): a thread that writes again gets the connection it wrote
    with, whose page cache is still good. (SQLite drops a connection's whole cache when another
    one changed the database, and first in, first out handed the collector's writer its two
    connections in turn, so each batch began with an empty cache.)"""
    dialect = url.get_dialect()
    if issubclass(dialect, DefaultDialect) and issubclass(dialect.get_pool_class(url), QueuePool):
        return {"pool_use_lifo": True}
    return {}


def keep_private(path: str | None) -> None:
    """The database holds names, ID numbers, password hashes and session digests: only its
    owner may read it. Created 0600 (SQLite makes its -wal and -shm files with the database's
    own mode), and an existing one readable by others is made so (it was 0644 under the usual
    umask). In-memory databases (None, "", ":memory:") have no file."""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        return  # SQLite says so, as before
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
            log.warning("%s was readable by other users: now 0600", path)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path + suffix, 0o600)


class Store:
    """Entries, devices and dead letters. Safe to share between threads (one engine, a pool)."""

    def __init__(self, url: str | Path | URL, *, busy_timeout_ms: int = 5000) -> None:
        self.url = database_url(url)
        self._engine: Engine = create_engine(self.url, **_pool_options(self.url))
        if self._engine.dialect.name == "sqlite":
            keep_private(self._engine.url.database)

            def on_connect(dbapi_connection: Any, _record: Any) -> None:
                _apply_sqlite_pragmas(dbapi_connection, busy_timeout_ms)

            event.listen(self._engine, "connect", on_connect)
        elif self._engine.dialect.name == "postgresql":
            event.listen(self._engine, "connect", _utc_session)
        self._entry_rows = EntryRows(self._engine.dialect)
        for column in migrate(self._engine):  # Alembic's revisions (server/store/schema.py)
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

    def entry_row(self, event: Event) -> EntryRow:
        """An event as this database's driver takes it (prepare it outside the transaction)."""
        return self._entry_rows.values(event)

    def write_batch(
        self,
        batch: WriteBatch,
        received_at: datetime,
        *,
        before_commit: Callable[[], None] = lambda: None,
    ) -> BatchResult:
        """Entries (new ids only), dead letters and device updates in one transaction; committed
        on return. `before_commit` runs inside the transaction just before the commit (the
        collector's failpoint); if it raises, nothing of the batch is stored."""
        return write_batch(self._engine, self._entry_rows, batch, received_at, before_commit)

    def add_events(
        self,
        events: Sequence[Event],
        received_at: datetime,
        *,
        before_commit: Callable[[], None] = lambda: None,
    ) -> StoredEvents:
        """Store events in one transaction, skipping ids already stored; committed on return."""
        batch = WriteBatch(entries=[self.entry_row(event) for event in events])
        return self.write_batch(batch, received_at, before_commit=before_commit).events

    def record_status(self, device_id: str, status: Status, received_at: datetime) -> None:
        """Remember a device's (retained) online/offline status and what it reported with it."""
        update = status_update(device_id, status, received_at)
        self.write_batch(WriteBatch(devices=[update]), received_at)

    def record_telemetry(self, device_id: str, telemetry: Telemetry, received_at: datetime) -> None:
        """Keep only a device's latest telemetry; it also proves the device is alive now."""
        update = telemetry_update(device_id, telemetry, received_at)
        self.write_batch(WriteBatch(devices=[update]), received_at)

    def dead_letter(
        self,
        topic: str,
        payload: bytes,
        reason: str,
        detail: str,
        received_at: datetime,
        *,
        keep_bytes: int = DEAD_LETTER_PAYLOAD_BYTES,
        event_id: str | None = None,
    ) -> bool:
        """Keep a message the collector could not accept, so an operator can see why: its
        topic, reason, detail, the event it names, its size and SHA-256, and its first
        `keep_bytes` bytes (at most 4 KiB).

        The same message again (same topic, payload and reason: a gate's resend) only counts a
        repeat on the row it already has. Returns True if a row was added, False for a repeat.
        """
        record = DeadLetterRecord(topic, payload, reason, detail, keep_bytes, event_id)
        result = self.write_batch(WriteBatch(dead_letters=[record]), received_at)
        return result.dead_letters_added[0]

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
        No index starts with the gate (server/store/tables.py), so this reads the whole table: an
        audit of one gate, not a query for the dashboard.
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
                yield StoredEntry.model_validate({name: row[name] for name in ENTRY_COLUMNS})

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

    def devices(self, sites: Collection[str] | None = None) -> list[DeviceRecord]:
        """Every gate heard from, by id; of `sites` only, when given."""
        query = select(devices_table).order_by(devices_table.c.device_id)
        if sites is not None:
            query = query.where(devices_table.c.site_id.in_(sorted(sites)))
        with self._engine.connect() as conn:
            rows = conn.execute(query)
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


def status_update(device_id: str, status: Status, received_at: datetime) -> DeviceUpdate:
    """A device's (retained) online/offline status and what it reported with it."""
    values = {
        "state": status.state,
        "status_ts": status.ts,
        "status_received_at": received_at,
        "version": status.version,
        "boot_id": status.boot_id,
        "faults": list(status.faults),
        # Where the gate stands (optional Status fields; "" from a gate that does not say).
        "site_id": status.site_id,
        "location": status.location,
        "direction": "" if status.direction is None else str(status.direction),
    }
    return DeviceUpdate(device_id, values)


def telemetry_update(device_id: str, telemetry: Telemetry, received_at: datetime) -> DeviceUpdate:
    """A device's latest telemetry; it also proves the device is alive now."""
    values = {
        "telemetry": telemetry.model_dump(mode="json"),
        "telemetry_at": received_at,
        "last_seen": received_at,
    }
    return DeviceUpdate(device_id, values)
