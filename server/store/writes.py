"""The store's write side for ingest: many messages' rows in one transaction.

The collector commits a batch at a time: the new entries (deduplicated by event_id with one
lookup per 500 ids, inserted 500 rows per INSERT), the dead letters of the messages it refused,
and the devices' status and telemetry, all in the same transaction, so one fsync (SQLite WAL,
synchronous=FULL) covers the whole batch. An event whose id is stored already is compared with
the stored row, field by field, only then (the lookup of a new id finds nothing and costs what
it did): the same content is a resend, other content a conflict, kept as a dead letter.
Store.add_events, Store.dead_letter and the device updates are this same code with a batch of
one kind.

Entry rows are prepared outside the transaction (`EntryRows.values`, on the collector's MQTT
thread): the Event's fields in column order, already converted by each column's own SQLAlchemy
bind processor for the engine's dialect, so the insert hands the driver ready tuples and pays no
per-row SQLAlchemy overhead, while storing exactly what SQLAlchemy Core would.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from itertools import chain
from operator import itemgetter
from typing import Any, NamedTuple

from sqlalchemy import Connection, Dialect, Engine, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from protocol.messages import Event
from server.store.tables import (
    DEAD_LETTER_PAYLOAD_BYTES,
    UtcDateTime,
    audit_log_table,
    dead_letters_table,
    devices_table,
    entries_table,
    erased_subjects_table,
)

log = logging.getLogger("gatescan.store")

DETAIL_CHARS = 1000
REASON_CHARS = 32
# Ids per `IN (...)` lookup: well under SQLite's bound-parameter limit.
LOOKUP_CHUNK = 500
# How often a batch is retried when another writer stored one of its ids in between.
INSERT_ATTEMPTS = 3

ENTRY_COLUMNS = (*Event.model_fields, "received_at")
STORED_COLUMNS = ENTRY_COLUMNS[:-1]  # what an EntryRow holds, in its order
_ENUM_FIELDS = frozenset({"direction", "status", "reason", "credential_type"})


class Conflict(NamedTuple):
    """An event of the batch whose id is stored (or came earlier in the batch) with other
    content: the stored one stands, this one is not stored."""

    position: int  # in the batch's entries
    event_id: str
    fields: tuple[str, ...]  # the columns that differ (their names: never their values)

    @property
    def detail(self) -> str:
        return f"event_id stored before with other content: differs in {', '.join(self.fields)}"


@dataclass(frozen=True)
class StoredEvents:
    """The outcome of storing events: every id in `ids` is committed and may be acked (for a
    conflict's id, what is committed is the first content, not the conflict's)."""

    ids: tuple[str, ...]  # each id of the batch once, in the order given
    new: tuple[str, ...]  # inserted by this call
    duplicate_count: int  # events of the batch stored before (a resend) or repeated in it, same
    conflicts: tuple[Conflict, ...] = ()  # events whose id is stored with other content
    # Events naming a subject `gatescan person erase` erased: not stored, yet in `ids` (acked,
    # so the gate stops resending them; server/store/person_data.py).
    erased: tuple[str, ...] = ()


class EntryRow(NamedTuple):
    """One event, ready to insert: `values` are the driver's, in ENTRY_COLUMNS order minus
    received_at (the batch's, added at insert time). (A NamedTuple: made once per event on the
    collector's busiest thread, where a frozen dataclass costs several times as much.)"""

    event_id: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class DeadLetterRecord:
    """A refused message to keep: its topic, reason, a detail, the event it names (if any),
    and its first `keep_bytes` (at most DEAD_LETTER_PAYLOAD_BYTES) with the whole one's digest
    and size."""

    topic: str
    payload: bytes
    reason: str
    detail: str
    keep_bytes: int = DEAD_LETTER_PAYLOAD_BYTES
    event_id: str | None = None


@dataclass(frozen=True)
class DeviceUpdate:
    """New values for one device's row (status or telemetry), created if it has none."""

    device_id: str
    values: dict[str, Any]


@dataclass
class WriteBatch:
    entries: list[EntryRow] = field(default_factory=list)
    dead_letters: list[DeadLetterRecord] = field(default_factory=list)
    devices: list[DeviceUpdate] = field(default_factory=list)
    # The dead letter to keep, in the same transaction, for an entry that conflicts with a
    # stored one (None: conflicts are only reported, in BatchResult.events.conflicts).
    conflict_letter: Callable[[Conflict], DeadLetterRecord] | None = None


@dataclass(frozen=True)
class BatchResult:
    """What a committed batch did: its events, and for each dead letter (in order) whether it
    added a row (True) or counted a repeat of an earlier one (False)."""

    events: StoredEvents
    dead_letters_added: tuple[bool, ...]


class EntryRows:
    """Entries as the driver takes them: the compiled statements and each column's conversion.

    With a driver whose parameter markers are plain `?` or `%s` (SQLite's sqlite3), rows go in
    as multi-row INSERTs and stored rows are looked up with one `IN (?, ...)` per chunk, both as
    SQL text made once per size: no per-row or per-id work in SQLAlchemy. Other drivers (psycopg's
    named markers) get executemany and SQLAlchemy's own IN.
    """

    def __init__(self, dialect: Dialect) -> None:
        compiled = insert(entries_table).compile(dialect=dialect, column_keys=list(ENTRY_COLUMNS))
        self.sql = str(compiled)
        order = list(compiled.positiontup or ENTRY_COLUMNS)
        if sorted(order) != sorted(ENTRY_COLUMNS):
            raise RuntimeError(f"unexpected entries insert: {self.sql}")
        self._marker = {"qmark": "?", "format": "%s"}.get(str(dialect.paramstyle))
        self._positional = bool(dialect.positional)
        self._rows_per_statement = _rows_per_statement(dialect, len(order))
        in_order = order == list(ENTRY_COLUMNS)
        self._reorder = None if in_order else [ENTRY_COLUMNS.index(name) for name in order]
        head, _, values = self.sql.rpartition(" VALUES ")
        self._insert_sql = _SqlBySize(lambda rows: f"{head} VALUES {', '.join([values] * rows)}")
        quote = dialect.identifier_preparer
        marker = self._marker or "?"
        stored = ", ".join(quote.quote(name) for name in ("event_id", *STORED_COLUMNS))
        self._stored_sql = _SqlBySize(
            lambda ids: (
                f"SELECT {stored} FROM {quote.format_table(entries_table)} "
                f"WHERE {quote.quote('event_id')} IN ({', '.join([marker] * ids)})"
            )
        )
        names = ENTRY_COLUMNS[:-1]
        self._get_fields = itemgetter(*names)
        # The few columns whose values SQLAlchemy converts (times, booleans), and the closed
        # sets, which are plain strings in the database.
        self._converted = [
            (i, processor)
            for i, name in enumerate(names)
            if (processor := _bind_processor(name, dialect)) is not None
        ]
        self._enums = [i for i, name in enumerate(names) if name in _ENUM_FIELDS]
        self._received_at = _bind_processor("received_at", dialect)

    def values(self, event: Event) -> EntryRow:
        # The validated values themselves, in column order: no dump, no copy of the model.
        values = list(self._get_fields(event.__dict__))
        for i in self._enums:
            values[i] = str(values[i])
        for i, processor in self._converted:
            values[i] = processor(values[i])
        return EntryRow(event.event_id, tuple(values))

    def insert(self, conn: Connection, rows: Sequence[EntryRow], received_at: datetime) -> None:
        stamp = received_at if self._received_at is None else self._received_at(received_at)
        params: list[Any] = [(*row.values, stamp) for row in rows]
        if not self._positional:
            params = [dict(zip(ENTRY_COLUMNS, values, strict=True)) for values in params]
        elif self._reorder is not None:
            params = [tuple(values[i] for i in self._reorder) for values in params]
        if self._marker is None:
            conn.exec_driver_sql(self.sql, params)  # executemany
            return
        # Many rows per statement, not executemany: the sqlite3 module lets go of the GIL for
        # every row it steps, and each time the collector's network thread (busy parsing) may
        # keep it for a switch interval; one statement of many rows lets go of it once.
        step = self._rows_per_statement
        for start in range(0, len(params), step):
            chunk = params[start : start + step]
            conn.exec_driver_sql(self._insert_sql[len(chunk)], tuple(chain.from_iterable(chunk)))

    def stored_values(self, conn: Connection, ids: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """The stored rows of these ids (those that are stored), as `EntryRow.values` holds
        them: the driver's values, so a resend compares equal to its stored row."""
        found: dict[str, tuple[Any, ...]] = {}
        table = entries_table
        for start in range(0, len(ids), LOOKUP_CHUNK):
            chunk = ids[start : start + LOOKUP_CHUNK]
            if self._marker is None:
                # Other drivers: SQLAlchemy's result types (times come back as aware datetimes,
                # which compare equal to the ones bound).
                columns = [table.c.event_id, *(table.c[name] for name in STORED_COLUMNS)]
                rows = conn.execute(select(*columns).where(table.c.event_id.in_(chunk)))
            else:
                rows = conn.exec_driver_sql(self._stored_sql[len(chunk)], tuple(chunk))
            found.update((row[0], tuple(row[1:])) for row in rows)
        return found


class _SqlBySize(dict[int, str]):
    """SQL text for a number of rows or ids, made on first use and kept."""

    def __init__(self, make: Callable[[int], str]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, size: int) -> str:
        sql = self[size] = self._make(size)
        return sql


def _rows_per_statement(dialect: Dialect, columns: int) -> int:
    """Rows per multi-row INSERT: within the driver's limit of bound parameters (SQLite: 32,766
    since 3.32, 999 before), and at most 500."""
    limit = 999
    version = getattr(getattr(dialect, "dbapi", None), "sqlite_version_info", None)
    if dialect.name != "sqlite" or (version is not None and tuple(version) >= (3, 32)):
        limit = 32766
    return max(1, min(500, limit // columns))


def _bind_processor(column: str, dialect: Dialect) -> Callable[[Any], Any] | None:
    """What SQLAlchemy does to a value of this column before the driver gets it (the dialect's
    own type: for SQLite's DATETIME, its text format), or the same in one step where that is
    proven equal (see _same_as)."""
    processor = entries_table.c[column].type.dialect_impl(dialect).bind_processor(dialect)
    if processor is not None and isinstance(entries_table.c[column].type, UtcDateTime):
        return _same_as(processor, utc_datetime_text) or processor
    return processor


_TEXT_FORMAT = "%04d-%02d-%02d %02d:%02d:%02d.%06d"


def utc_datetime_text(value: datetime) -> str:
    """An aware datetime as SQLite's DATETIME text of its UTC time: what SQLAlchemy's UtcDateTime
    writes on SQLite (to UTC, then its default text format), at about a third of the cost: the
    collector converts every event's `ts`, and pydantic's tzinfo makes `astimezone` slow."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError(f"naive datetime {value!r}: the store keeps only aware UTC times")
    utc = value - offset if offset else value
    return _TEXT_FORMAT % (
        utc.year,
        utc.month,
        utc.day,
        utc.hour,
        utc.minute,
        utc.second,
        utc.microsecond,
    )


_PROBES = (
    datetime(2026, 11, 26, 7, 3, 13, 51355, tzinfo=UTC),
    datetime(5, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=7))),  # year < 1000, whole second
    datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-9, minutes=-30))),
)


def _same_as(
    reference: Callable[[Any], Any], candidate: Callable[[datetime], str]
) -> Callable[[datetime], str] | None:
    """`candidate` if it gives exactly what `reference` (SQLAlchemy's own processor for this
    dialect) gives on every probe, else None: another dialect or a new SQLAlchemy text format
    keeps SQLAlchemy's."""
    try:
        same = all(candidate(probe) == reference(probe) for probe in _PROBES)
    except Exception:
        return None
    return candidate if same else None


def write_batch(
    engine: Engine,
    rows: EntryRows,
    batch: WriteBatch,
    received_at: datetime,
    before_commit: Callable[[], None] = lambda: None,
) -> BatchResult:
    """Write the whole batch in one transaction; committed on return.

    `before_commit` runs inside the transaction, after every write and before the commit: the
    collector's failpoint for "killed with the rows written but not committed". If it raises,
    the transaction is rolled back and the exception propagates.
    """
    if received_at.tzinfo is None:
        raise ValueError(f"naive datetime {received_at!r}: received_at must be aware (UTC)")
    for attempt in range(1, INSERT_ATTEMPTS + 1):
        try:
            with engine.begin() as conn:
                events = _insert_new_entries(conn, rows, batch.entries, received_at)
                letters = batch.dead_letters
                if events.conflicts and batch.conflict_letter is not None:
                    letters = [*letters, *map(batch.conflict_letter, events.conflicts)]
                added = tuple(_dead_letter(conn, record, received_at) for record in letters)
                for device in batch.devices:
                    _upsert_device(conn, device, received_at)
                before_commit()
            return BatchResult(events, added)
        except IntegrityError:
            # Another writer stored one of these ids (or created one of these devices) between
            # our lookup and our insert. Rolled back: look again, and it is seen this time.
            if attempt == INSERT_ATTEMPTS:
                raise
            log.info("row stored concurrently; retrying the batch (attempt %d)", attempt)
    raise AssertionError("unreachable")


def _insert_new_entries(
    conn: Connection, rows: EntryRows, entries: Sequence[EntryRow], received_at: datetime
) -> StoredEvents:
    first = {entry.event_id: entry for entry in entries}
    repeated = len(first) < len(entries)
    if repeated:  # an id more than once in the batch: its first content is the one stored
        first = {}
        for entry in entries:
            first.setdefault(entry.event_id, entry)
    unique = list(first.values())
    # A portable dedupe: look the ids up, insert the rest. (ON CONFLICT DO NOTHING would do it
    # in one statement, but would not say which ids were new.) A new id is looked up and not
    # found, as before; only an id found (a resend, or a conflict) has its row read.
    stored = rows.stored_values(conn, [entry.event_id for entry in unique])
    fresh = [entry for entry in unique if entry.event_id not in stored]
    conflicts: list[Conflict] = []
    if stored or repeated:
        # Each event against the stored row of its id, else against its id's first in the batch.
        for index, entry in enumerate(entries):
            reference = stored.get(entry.event_id) or first[entry.event_id].values
            if entry.values != reference:
                conflicts.append(_conflict(index, entry, reference))
    erased: tuple[str, ...] = ()
    if fresh:
        rows.insert(conn, fresh, received_at)
        erased = _remove_erased(conn, fresh)
    return StoredEvents(
        ids=tuple(entry.event_id for entry in unique),
        new=tuple(entry.event_id for entry in fresh if entry.event_id not in erased),
        duplicate_count=len(entries) - len(fresh) - len(conflicts),
        conflicts=tuple(conflicts),
        erased=erased,
    )


_SUBJECT_ID = STORED_COLUMNS.index("subject_id")


def _remove_erased(conn: Connection, fresh: Sequence[EntryRow]) -> tuple[str, ...]:
    """The ids of the just-inserted entries that name an erased subject, deleted again in the same
    transaction. Looked for after the insert: on SQLite the insert took the write lock, so an
    erasure either committed before (its marker is seen) or waits for this commit (and deletes
    these rows itself). On PostgreSQL the erasure holds the markers' table EXCLUSIVE until it
    commits, and this SHARE lock waits for it (several collectors' SHARE locks do not wait for
    each other). With no marker at all (the usual case) it costs one tiny lookup per batch."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE erased_subjects IN SHARE MODE"))
    marker = erased_subjects_table.c.subject_sha256
    if conn.scalar(select(marker).limit(1)) is None:
        return ()
    by_digest: dict[str, list[str]] = {}
    for entry in fresh:
        subject_id = entry.values[_SUBJECT_ID]
        if subject_id:
            digest = hashlib.sha256(str(subject_id).encode("utf-8")).hexdigest()
            by_digest.setdefault(digest, []).append(entry.event_id)
    digests = sorted(by_digest)
    gone: list[str] = []
    for start in range(0, len(digests), LOOKUP_CHUNK):
        chunk = digests[start : start + LOOKUP_CHUNK]
        for digest in conn.scalars(select(marker).where(marker.in_(chunk))):
            gone.extend(by_digest[digest])
    for start in range(0, len(gone), LOOKUP_CHUNK):
        ids = gone[start : start + LOOKUP_CHUNK]
        conn.execute(delete(entries_table).where(entries_table.c.event_id.in_(ids)))
    return tuple(gone)


def _conflict(index: int, entry: EntryRow, stored: tuple[Any, ...]) -> Conflict:
    fields = tuple(
        name
        for name, mine, theirs in zip(STORED_COLUMNS, entry.values, stored, strict=True)
        if mine != theirs
    )
    return Conflict(index, entry.event_id, fields)


def _dead_letter(conn: Connection, record: DeadLetterRecord, received_at: datetime) -> bool:
    """Add a dead letter, or count a repeat on the row of the same message (same topic, payload
    and reason: a gate's resend). True if a row was added."""
    table = dead_letters_table
    digest = hashlib.sha256(record.payload).hexdigest()
    reason = record.reason[:REASON_CHARS]
    same = (table.c.payload_sha256 == digest) & (table.c.topic == record.topic)
    earlier = conn.scalar(select(table.c.id).where(same, table.c.reason == reason).limit(1))
    if earlier is not None:
        repeated = {"repeats": table.c.repeats + 1, "last_received_at": received_at}
        conn.execute(update(table).where(table.c.id == earlier).values(repeated))
        return False
    keep = max(0, min(record.keep_bytes, DEAD_LETTER_PAYLOAD_BYTES))
    row = {
        "received_at": received_at,
        "topic": record.topic,
        "reason": reason,
        "detail": record.detail[:DETAIL_CHARS],
        "payload": bytes(record.payload[:keep]),
        "payload_size": len(record.payload),
        "payload_sha256": digest,
        "repeats": 0,
        "event_id": record.event_id,
    }
    conn.execute(insert(table).values(row))
    return True


def _upsert_device(conn: Connection, device: DeviceUpdate, received_at: datetime) -> None:
    # Portable upsert: update, insert when nothing was there. A concurrent insert of the same
    # device raises IntegrityError, and write_batch runs the batch again.
    table = devices_table
    where = table.c.device_id == device.device_id
    door = _door_releases(conn, device, received_at)
    if conn.execute(update(table).where(where).values(device.values)).rowcount == 0:
        conn.execute(insert(table).values(device_id=device.device_id, **device.values))
    if door:
        conn.execute(insert(audit_log_table), door)


# The telemetry counts of releases no verdict granted that the audit log records as they grow
# (a fire alarm is recorded from the status, as it starts and ends).
_COUNTED_RELEASES = {"button_releases": "button", "dashboard_releases": "dashboard"}


def _door_releases(
    conn: Connection, device: DeviceUpdate, received_at: datetime
) -> list[dict[str, Any]]:
    """The audit rows (action "door", actor "system") a device update brings, in its batch's
    transaction: an online status whose faults gain or lose `fire_alarm` (an offline one is
    not read for it: the last will says nothing of the alarm), and a telemetry whose release
    counts grew since the gate's previous one (a gate restarted, its uptime smaller, counts
    from zero); each row the gate's site's. One lookup of the device's row, for a status or a
    telemetry only."""
    values = device.values
    status = "faults" in values and values.get("state") == "online"
    telemetry = values.get("telemetry")
    if not status and not isinstance(telemetry, dict):
        return []
    table = devices_table
    query = select(table.c.faults, table.c.telemetry, table.c.site_id)
    before = conn.execute(query.where(table.c.device_id == device.device_id)).first()
    rows: list[dict[str, Any]] = []
    # The gate's site (the status says it; a telemetry, the row's): its managers read the row.
    site = values.get("site_id") or (before.site_id if before is not None else "") or ""

    def row(details: dict[str, Any]) -> None:
        rows.append(
            {
                "at": received_at,
                "actor": "system",
                "action": "door",
                "subject": device.device_id,
                "details": details,
                "site_id": str(site)[:200],
            }
        )

    if status:
        was = before is not None and "fire_alarm" in (before.faults or [])
        now = "fire_alarm" in values["faults"]
        if now != was:
            row({"release": "fire_alarm", "active": now})
    if isinstance(telemetry, dict):
        earlier = before.telemetry if before is not None else None
        restarted = not isinstance(earlier, dict) or _number(telemetry, "uptime_s") < _number(
            earlier, "uptime_s"
        )
        for field_name, release in _COUNTED_RELEASES.items():
            count = int(_number(telemetry, field_name))
            grown = count if restarted else count - int(_number(earlier or {}, field_name))
            if grown > 0:
                row({"release": release, "count": grown, "since_start": count})
    return rows


def _number(values: dict[str, Any], key: str) -> float:
    value = values.get(key, 0)
    return float(value) if isinstance(value, int | float) else 0.0
