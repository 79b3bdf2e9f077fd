"""The gate's local history: every event it recorded, one file per UTC day and segment.

Layout under `<data_dir>/journal/history/`:

    2026-11-26.0001.log               table `events` (doc id = seq), TinyDB on an append-only log
    2026-11-26.0002.log               ... a new segment every `max_entries` events

Segments stay bounded so that opening the journal and reading a day stay quick; only the segment
written last is kept open, since events arrive in time order and nearly always go to it.

Retention (driven by device/journal/journal.py): `purge_before(cutoff)` deletes every file of the
days before the cutoff, segments and damaged copies (`<segment>.corrupt-<time>`) alike, and says
which days went. Other files in the directory are left alone.
"""

import logging
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from tinydb import TinyDB
from tinydb.table import Document

from device.journal.durable_files import FileWriter, fsync_directory
from device.journal.storage import open_log_db
from protocol.messages import Event

logger = logging.getLogger(__name__)

EVENTS_TABLE = "events"
SEGMENT_SUFFIX = "log"


def segment_name(day: date, number: int) -> str:
    """File name of one history segment: `<UTC day>.<number, from 1>.log`."""
    return f"{day.isoformat()}.{number:04d}.{SEGMENT_SUFFIX}"


def parse_events(docs: Iterable[Document], where: Path) -> tuple[list[Event], list[int]]:
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


def _day_of_file(name: str) -> date | None:
    """The UTC day a history file (segment, or a damaged copy of one) belongs to."""
    if name[10:11] != ".":
        return None
    try:
        return date.fromisoformat(name[:10])
    except ValueError:
        return None


def _parse_segment_name(name: str) -> tuple[date, int] | None:
    """(day, number) from `2026-11-26.0001.log`; None for any other file."""
    parts = name.split(".")
    if len(parts) != 3 or parts[2] != SEGMENT_SUFFIX or not parts[1].isdecimal():
        return None
    day = _day_of_file(name)
    return (day, int(parts[1])) if day is not None else None


class History:
    """The local history: per UTC day, segments of at most `max_entries` events.

    Not thread-safe on its own: the Journal's lock guards it.
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
            events, _ = parse_events(self._read_segment(day, number), self._dir)
            found.extend(events)
        return sorted(found, key=lambda event: event.seq)

    def seqs_of_day(self, day: date) -> set[int]:
        seqs: set[int] = set()
        for number in self._segment_numbers(day):
            seqs.update(doc.doc_id for doc in self._read_segment(day, number))
        return seqs

    def highest_seq(self) -> int:
        """The highest seq in any segment: reads everything, so only for recovery."""
        highest = 0
        for day in sorted({day for day, _ in self._segments("*")}):
            highest = max([highest, *self.seqs_of_day(day)])
        return highest

    def purge_before(self, cutoff: date) -> list[date]:
        """Delete every file of the days before `cutoff` (segments and damaged copies alike)."""
        if self._open_day is not None and self._open_day < cutoff:
            self.close()
        expired = {path: _day_of_file(path.name) for path in self._dir.iterdir()}
        expired = {path: day for path, day in expired.items() if day is not None and day < cutoff}
        for path in expired:
            path.unlink(missing_ok=True)
        if expired:
            fsync_directory(self._dir)
        return sorted({day for day in expired.values() if day is not None})

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
            self._open_db = self._open_segment(day, self._open_number)
        return self._open_db

    def _open_last_segment(self, day: date) -> None:
        self.close()
        number = max(self._segment_numbers(day), default=1)
        self._open_db = self._open_segment(day, number)
        self._open_day, self._open_number = day, number

    def _open_segment(self, day: date, number: int) -> TinyDB:
        return open_log_db(self._dir / segment_name(day, number), self._writer)

    def _read_segment(self, day: date, number: int) -> list[Document]:
        if self._open_db is not None and (day, number) == (self._open_day, self._open_number):
            return self._open_db.table(EVENTS_TABLE).all()
        with self._open_segment(day, number) as closed_segment:
            return closed_segment.table(EVENTS_TABLE).all()

    def _segment_numbers(self, day: date) -> list[int]:
        return sorted(number for _, number in self._segments(day.isoformat()))

    def _segments(self, day_pattern: str) -> list[tuple[date, int]]:
        paths = self._dir.glob(f"{day_pattern}.*.{SEGMENT_SUFFIX}")
        found = (_parse_segment_name(path.name) for path in paths)
        return [segment for segment in found if segment is not None]
