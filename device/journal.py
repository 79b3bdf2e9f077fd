"""The gate's journal, its source of truth: the outbox (events the collector has not acknowledged)
and the local history, both TinyDB files written with an atomic-replace storage.

Layout under `<data_dir>/journal/`:

    outbox.json                       tables `events` (doc id = seq) and `meta` (last_seq)
    history/2026-11-26.0001.json      table `events`, one file per UTC day and segment
    history/2026-11-26.0002.json      ... a new segment every `history_max_entries` events
    lock                              held (flock) while a process has the journal open

A write never grows with the total history: the outbox holds only unacknowledged events and
the history is written one segment (at most `history_max_entries` events) at a time.
`record()` writes the outbox first (the event and the new last_seq in one atomic replace, so a
seq is never handed out twice, even across a crash), then the history segment. On open, any
outbox event missing from the history (a crash between the two writes) is added to it.
"""

import errno
import fcntl
import logging
import os
import threading
from collections.abc import Iterable
from datetime import UTC, date
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

from pydantic import ValidationError
from tinydb import TinyDB
from tinydb.table import Document, Table

from device.tinydb_storage import (
    AtomicJSONStorage,
    FileWriter,
    make_directory_durably,
    remove_stray_temp_files,
    set_aside,
    write_fully,
)
from protocol import Event

logger = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.json"
HISTORY_DIR = "history"
EVENTS_TABLE = "events"
META_TABLE = "meta"
META_DOC_ID = 1


class JournalError(OSError):
    """The journal could not be written (disk full, I/O error); the event was NOT recorded."""


def _journal_error(action: str, exc: OSError) -> JournalError:
    return JournalError(exc.errno or errno.EIO, f"{action}: {exc.strerror or exc}")


def segment_name(day: date, number: int) -> str:
    """File name of one history segment: `<UTC day>.<number, from 1>.json`."""
    return f"{day.isoformat()}.{number:04d}.json"


def _open_db(path: Path, writer: FileWriter) -> TinyDB:
    return TinyDB(path, storage=AtomicJSONStorage, writer=writer, append_only_tables={EVENTS_TABLE})


def _storage(db: TinyDB) -> AtomicJSONStorage:
    return cast(AtomicJSONStorage, db.storage)


def _parse_events(docs: Iterable[Document], where: Path) -> tuple[list[Event], list[int]]:
    """Validate stored documents back into Events; returns (events, doc ids of the bad ones)."""
    events, bad = [], []
    for doc in docs:
        try:
            event = Event.model_validate(doc)
        except ValidationError as exc:
            logger.error("%s: entry %s is not a valid event: %s", where, doc.doc_id, exc)
            bad.append(doc.doc_id)
            continue
        if event.seq != doc.doc_id:
            logger.error("%s: entry %s holds seq %d", where, doc.doc_id, event.seq)
            bad.append(doc.doc_id)
            continue
        events.append(event)
    return events, bad


class _History:
    """The local history: per UTC day, segments of at most `max_entries` events.

    Only the segment written last stays open; events arrive in time order, so it is nearly
    always the one the next event goes to.
    """

    def __init__(self, directory: Path, max_entries: int, writer: FileWriter) -> None:
        self._dir = directory
        self._max_entries = max_entries
        self._writer = writer
        self._open_day: date | None = None
        self._open_number = 0
        self._open_db: TinyDB | None = None

    def add(self, event_doc: dict[str, Any], seq: int, day: date) -> None:
        """Append one event to the day's last segment (or a new one when it is full)."""
        events = self._writable_segment(day).table(EVENTS_TABLE)
        events.insert(Document(event_doc, doc_id=seq))

    def read_day(self, day: date) -> list[Event]:
        found: list[Event] = []
        for number in self._segment_numbers(day):
            events, _ = _parse_events(
                self._segment(day, number).table(EVENTS_TABLE).all(), self._dir
            )
            found.extend(events)
        return sorted(found, key=lambda event: event.seq)

    def seqs_of_day(self, day: date) -> set[int]:
        seqs: set[int] = set()
        for number in self._segment_numbers(day):
            seqs.update(doc.doc_id for doc in self._segment(day, number).table(EVENTS_TABLE))
        return seqs

    def highest_seq(self) -> int:
        """The highest seq in any segment: reads everything, so only for recovery."""
        highest = 0
        for day in sorted({day for day, _ in self._segments("*")}):
            highest = max([highest, *self.seqs_of_day(day)])
        return highest

    def close(self) -> None:
        if self._open_db is not None:
            self._open_db.close()
        self._open_db, self._open_day = None, None

    def _writable_segment(self, day: date) -> TinyDB:
        if self._open_day != day or self._open_db is None:
            self._open_last_segment(day)
        assert self._open_db is not None
        if len(self._open_db.table(EVENTS_TABLE)) >= self._max_entries:
            self._open_db.close()
            self._open_number += 1
            self._open_db = _open_db(self._dir / segment_name(day, self._open_number), self._writer)
        return self._open_db

    def _open_last_segment(self, day: date) -> None:
        self.close()
        number = max(self._segment_numbers(day), default=1)
        self._open_db = _open_db(self._dir / segment_name(day, number), self._writer)
        self._open_day, self._open_number = day, number

    def _segment(self, day: date, number: int) -> TinyDB:
        """The open segment itself, or a freshly opened copy of a closed one (for reading)."""
        if self._open_db is not None and (day, number) == (self._open_day, self._open_number):
            return self._open_db
        return _open_db(self._dir / segment_name(day, number), self._writer)

    def _segment_numbers(self, day: date) -> list[int]:
        return sorted(number for _, number in self._segments(day.isoformat()))

    def _segments(self, day_pattern: str) -> list[tuple[date, int]]:
        found = (_parse_segment_name(p.name) for p in self._dir.glob(f"{day_pattern}.*.json"))
        return [segment for segment in found if segment is not None]


def _parse_segment_name(name: str) -> tuple[date, int] | None:
    """(day, number) from `2026-11-26.0001.json`; None for any other file."""
    parts = name.split(".")
    if len(parts) != 3 or parts[2] != "json" or not parts[1].isdecimal():
        return None
    try:
        return date.fromisoformat(parts[0]), int(parts[1])
    except ValueError:
        return None


class Journal:
    """The outbox and the daily history of one gate. Thread-safe: one lock guards everything, so
    the frame loop can record while the MQTT thread acknowledges."""

    def __init__(
        self,
        data_dir: Path,
        *,
        history_max_entries: int = 2000,
        writer: FileWriter = write_fully,
    ) -> None:
        """`writer` writes the bytes of every file; tests pass one that fails like a full disk."""
        if history_max_entries < 1:
            raise ValueError(f"history_max_entries must be >= 1, got {history_max_entries}")
        self._lock = threading.Lock()
        self._root = Path(data_dir) / "journal"
        history_dir = self._root / HISTORY_DIR
        try:
            make_directory_durably(history_dir)
            self._lock_fd: int | None = _lock_exclusively(self._root / "lock")
        except OSError as exc:
            raise _journal_error(f"cannot open the journal in {self._root}", exc) from exc
        self._history = _History(history_dir, history_max_entries, writer)
        self._pending: dict[str, int] = {}  # event_id -> seq of every event in the outbox
        self._last_seq = 0
        try:
            remove_stray_temp_files(history_dir)
            self._outbox = _open_db(self._root / OUTBOX_FILE, writer)
            self._events: Table = self._outbox.table(EVENTS_TABLE)
            self._meta: Table = self._outbox.table(META_TABLE)
            self._load()
        except BaseException as exc:
            os.close(self._lock_fd)
            self._lock_fd = None
            if isinstance(exc, OSError) and not isinstance(exc, JournalError):
                raise _journal_error(f"cannot open the journal in {self._root}", exc) from exc
            raise

    def next_seq(self) -> int:
        """The seq for the next event: last recorded seq + 1 (starts at 1); survives restarts."""
        with self._lock:
            self._check_open()
            return self._last_seq + 1

    def record(self, event: Event) -> None:
        """Durably (fsync'd) add the event to the outbox and to its UTC day's history.

        Raises ValueError if its seq is not above every seq recorded so far or its event_id is
        already pending, and JournalError if a file could not be written (the event is then not
        recorded; its seq may count as used).
        """
        event_doc = event.model_dump(mode="json")
        day = event.ts.astimezone(UTC).date()
        with self._lock:
            self._check_open()
            if event.seq <= self._last_seq:
                raise ValueError(f"seq {event.seq} is already used; next is {self._last_seq + 1}")
            if event.event_id in self._pending:
                raise ValueError(f"event {event.event_id} is already in the outbox")
            self._add_to_outbox(event.event_id, event.seq, event_doc)
            try:
                self._history.add(event_doc, event.seq, day)
            except OSError as exc:
                self._take_back_from_outbox(event.event_id, event.seq)
                raise _journal_error(f"history write failed for seq {event.seq}", exc) from exc

    def pending(self, limit: int | None = None) -> list[Event]:
        """Events in the outbox (not yet acknowledged), lowest seq first."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        with self._lock:
            self._check_open()
            seqs = sorted(self._pending.values())[:limit]
            docs = {doc.doc_id: doc for doc in self._events.get(doc_ids=seqs)}
        return [Event.model_validate(docs[seq]) for seq in seqs]

    def acknowledge(self, event_ids: Iterable[str]) -> int:
        """Drop these events from the outbox; unknown ids are ignored. Returns how many it did."""
        if isinstance(event_ids, str):
            raise TypeError("acknowledge() takes a collection of event ids, not one string")
        wanted = set(event_ids)
        with self._lock:
            self._check_open()
            known = [event_id for event_id in wanted if event_id in self._pending]
            if not known:
                return 0
            try:
                self._events.remove(doc_ids=[self._pending[event_id] for event_id in known])
            except OSError as exc:
                self._resync_with_outbox_file()
                raise _journal_error("outbox write failed while acknowledging", exc) from exc
            for event_id in known:
                del self._pending[event_id]
            return len(known)

    def outbox_depth(self) -> int:
        with self._lock:
            return len(self._pending)

    def history(self, day: date) -> list[Event]:
        """That UTC day's local history, lowest seq first."""
        with self._lock:
            self._check_open()
            try:
                return self._history.read_day(day)
            except OSError as exc:
                raise _journal_error(f"cannot read the history of {day}", exc) from exc

    def close(self) -> None:
        with self._lock:
            if self._lock_fd is None:
                return
            self._history.close()
            self._outbox.close()
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._lock_fd is None:
            raise ValueError("the journal is closed")

    def _add_to_outbox(self, event_id: str, seq: int, event_doc: dict[str, Any]) -> None:
        try:
            # The event and the seq it used land in the same file replace: no seq is reused.
            with _storage(self._outbox).batch():
                self._events.insert(Document(event_doc, doc_id=seq))
                self._meta.upsert(Document({"last_seq": seq}, doc_id=META_DOC_ID))
        except OSError as exc:
            self._resync_with_outbox_file()
            raise _journal_error(f"outbox write failed for seq {seq}", exc) from exc
        self._last_seq = seq
        self._pending[event_id] = seq

    def _take_back_from_outbox(self, event_id: str, seq: int) -> None:
        """Undo `_add_to_outbox` after the history write failed (last_seq stays: seq is used)."""
        try:
            self._events.remove(doc_ids=[seq])
        except OSError as exc:
            # It stays pending: it will still be sent, and the next start adds it to the history.
            logger.error("seq %d stays in the outbox: could not take it back (%s)", seq, exc)
            return
        del self._pending[event_id]

    def _load(self) -> None:
        """Rebuild the in-memory index from the files; repair what a crash or a person left."""
        events, bad = _parse_events(self._events.all(), _storage(self._outbox).path)
        if bad:
            self._drop_invalid_outbox_entries(bad)
        self._pending = {event.event_id: event.seq for event in events}
        stored_last = self._stored_last_seq()
        if stored_last is not None:
            self._last_seq = max(stored_last, *self._pending.values(), 0)
        else:
            # No trustworthy counter (new journal, or the outbox was lost): never reuse a seq.
            self._last_seq = max(self._history.highest_seq(), *self._pending.values(), 0)
            if self._last_seq:
                logger.warning("outbox had no last_seq; recovered %d from history", self._last_seq)
        self._add_missing_history(events)

    def _stored_last_seq(self) -> int | None:
        meta = self._meta.get(doc_id=META_DOC_ID)
        stored = meta.get("last_seq") if meta is not None else None
        return stored if isinstance(stored, int) and not isinstance(stored, bool) else None

    def _resync_with_outbox_file(self) -> None:
        """After a failed write, believe the file: a write can fail after its rename landed (the
        directory fsync), and then the file, not memory, says what is pending and which seq is used.
        """
        try:
            docs = self._events.all()  # the storage forgot its copy: this reads the file
            stored_last = self._stored_last_seq() or 0
        except OSError as exc:
            logger.error("cannot re-read the outbox after a failed write: %s", exc)
            return
        self._pending = {doc["event_id"]: doc.doc_id for doc in docs}
        self._last_seq = max(self._last_seq, stored_last, *self._pending.values())

    def _drop_invalid_outbox_entries(self, bad_doc_ids: list[int]) -> None:
        path = _storage(self._outbox).path
        kept = set_aside(path, copy=True)
        logger.error(
            "dropping %d invalid outbox entries; original kept in %s", len(bad_doc_ids), kept
        )
        try:
            self._events.remove(doc_ids=bad_doc_ids)
        except OSError as exc:
            raise _journal_error("cannot rewrite the outbox", exc) from exc

    def _add_missing_history(self, outbox_events: list[Event]) -> None:
        """A crash between the outbox and the history write leaves the event only in the outbox."""
        by_day: dict[date, list[Event]] = {}
        for event in outbox_events:
            by_day.setdefault(event.ts.astimezone(UTC).date(), []).append(event)
        for day, events in sorted(by_day.items()):
            in_history = self._history.seqs_of_day(day)
            for event in sorted(events, key=lambda e: e.seq):
                if event.seq in in_history:
                    continue
                try:
                    self._history.add(event.model_dump(mode="json"), event.seq, day)
                except OSError as exc:
                    logger.error("could not add seq %d to the history: %s", event.seq, exc)
                    return


def _lock_exclusively(path: Path) -> int:
    """Hold an exclusive flock on `path`: two processes writing one journal would reuse seqs."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise OSError(errno.EBUSY, "the journal is open in another process") from exc
    return fd
