"""The journal's outbox: the events the collector has not acknowledged, the seq counter, and the
events set aside as rejected, all in one TinyDB on an append-only log (device/journal/storage.py).

    <data_dir>/journal/outbox.log     tables `events` (doc id = seq), `meta` (last_seq) and
                                      `rejected` (doc id = seq: events refused for good)

Every change that must not be half-done is ONE appended line: an event with the last_seq it used
(so no seq is handed out twice, even across a crash), an event moving to the rejected table, or
back from it (`requeue`). A crash leaves each event in one table or the other, never both or none.

In memory it keeps, for each pending event, a `PendingEvent`: its id, its seq and its wire
bytes, made once (when the event is recorded, loaded at open, or requeued), so the uplink
publishes them as they are, without validating or serialising an Event again.

Not thread-safe on its own: the Journal's lock guards it. A write that fails raises the OSError
after re-reading the file, since a write can fail after its line landed: the file, not memory,
then says what is pending and which seq is used.
"""

import contextlib
import itertools
import json
import logging
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Self, cast

from tinydb.table import Document, Table

from device.journal.durable_files import FileWriter, keep_aside
from device.journal.history import EVENTS_TABLE, parse_events
from device.journal.line_format import replay
from device.journal.storage import AppendLogStorage, open_log_db
from protocol.messages import Event, Rejection

logger = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.log"
META_TABLE = "meta"
REJECTED_TABLE = "rejected"
META_DOC_ID = 1


@dataclass(frozen=True)
class PendingEvent:
    """An event in the outbox as the uplink sends it: its id, its seq and its wire bytes."""

    event_id: str
    seq: int
    wire: bytes  # the Event's JSON, exactly as published on .../events and stored by the collector

    @classmethod
    def of(cls, event: Event) -> Self:
        """Serialises the event: the one time its wire bytes are made."""
        return cls(event.event_id, event.seq, event.to_json())

    def event(self) -> Event:
        """The whole Event, parsed back from the wire bytes (for the rare caller that needs it)."""
        return Event.model_validate_json(self.wire)

    def document(self) -> dict[str, Any]:
        """What the outbox stores: the wire bytes parsed, so what is stored is what is sent."""
        return cast(dict[str, Any], json.loads(self.wire))


@dataclass(frozen=True)
class RejectedEvent:
    """An event set aside from the outbox: refused for good, kept for a person to look at."""

    event: Event
    reason: str  # the collector's dead-letter reason, or "broker_refused:0x87"
    detail: str
    rejected_at: datetime  # the gate's clock when it was set aside


def _parse_rejected(doc: Document) -> RejectedEvent | None:
    try:
        return RejectedEvent(
            event=Event.model_validate(doc["event"]),
            reason=str(doc["reason"]),
            detail=str(doc.get("detail", "")),
            rejected_at=datetime.fromisoformat(doc["rejected_at"]),
        )
    except (KeyError, TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        logger.error("rejected entry %s is not readable: %s", doc.doc_id, exc)
        return None


def read_rejected(outbox_path: Path) -> list[RejectedEvent]:
    """The rejected events in an outbox log, lowest seq first, read without opening it: no lock,
    no repair, no write. Safe beside a running agent: its appends are whole lines (a torn last
    one is skipped) and its compaction replaces the file by rename."""
    try:
        raw = outbox_path.read_bytes()
    except FileNotFoundError:
        return []
    stored = replay(raw).state.get(REJECTED_TABLE, {})
    return _readable_rejected(Document(doc, doc_id=int(key)) for key, doc in stored.items())


def read_pending(outbox_path: Path) -> list[Event]:
    """The events an outbox log holds unacknowledged, lowest seq first, read as `read_rejected`
    reads it (no lock, no repair, no write: an old SD card's journal in a card reader, or beside
    a running agent). FileNotFoundError: no journal there."""
    stored = replay(outbox_path.read_bytes()).state.get(EVENTS_TABLE, {})
    events, _bad = parse_events(
        [Document(doc, doc_id=int(key)) for key, doc in stored.items()], outbox_path
    )
    return sorted(events, key=lambda event: event.seq)


@dataclass(frozen=True)
class OutboxCounts:
    pending: int  # events not yet acknowledged by the collector
    rejected: int  # events set aside for good
    damaged_line: int | None  # the first line that cannot be read (the agent sets it aside)


def read_outbox_counts(outbox_path: Path) -> OutboxCounts:
    """How many events the outbox log holds, read as `read_rejected` reads it: no lock, no
    repair, no write, safe beside a running agent. FileNotFoundError: no journal there."""
    replayed = replay(outbox_path.read_bytes())
    return OutboxCounts(
        pending=len(replayed.state.get(EVENTS_TABLE, {})),
        rejected=len(replayed.state.get(REJECTED_TABLE, {})),
        damaged_line=replayed.bad_line,
    )


def _readable_rejected(docs: Iterable[Document]) -> list[RejectedEvent]:
    """The rejected entries that can be read, lowest seq first."""
    ordered = sorted(docs, key=lambda doc: doc.doc_id)
    return [found for found in map(_parse_rejected, ordered) if found is not None]


class Outbox:
    """The outbox log and, in memory, its pending events (event_id -> PendingEvent)."""

    def __init__(self, path: Path, writer: FileWriter) -> None:
        self._db = open_log_db(path, writer)
        self._storage = cast(AppendLogStorage, self._db.storage)
        self._events: Table = self._db.table(EVENTS_TABLE)
        self._meta: Table = self._db.table(META_TABLE)
        self._rejected: Table = self._db.table(REJECTED_TABLE)
        self._rejected_total = len(self._rejected)
        self._pending: dict[str, PendingEvent] = {}  # by event_id, in seq order
        self.last_seq = 0  # the highest seq handed out: the next event's is above it

    @property
    def path(self) -> Path:
        return self._storage.path

    @property
    def counter_trusted(self) -> bool:
        """False when the stored last_seq is missing or the log was damaged (lines set aside)."""
        return self._stored_last_seq() is not None and self._storage.set_aside_as is None

    def load(self) -> list[Event]:
        """Index the pending events (lowest seq first); drop invalid entries, keeping the
        original file aside. Raises OSError if the outbox could not be rewritten."""
        events, bad = parse_events(self._events.all(), self.path)
        if bad:
            self._drop_entries(bad)
        events.sort(key=lambda event: event.seq)
        self._pending = {event.event_id: PendingEvent.of(event) for event in events}
        self.last_seq = max(self._stored_last_seq() or 0, *(event.seq for event in events), 0)
        return events

    def pending_entry(self, event_id: str) -> PendingEvent | None:
        return self._pending.get(event_id)

    def depth(self) -> int:
        return len(self._pending)

    def pending(self, limit: int | None) -> list[PendingEvent]:
        return list(itertools.islice(self._pending.values(), limit))

    def add(self, entry: PendingEvent, event_doc: dict[str, Any]) -> None:
        with self._resyncing_on_failure(), self._storage.batch():
            # The event and the seq it used land in the same line: no seq is reused.
            self._events.insert(Document(event_doc, doc_id=entry.seq))
            self._meta.upsert(Document({"last_seq": entry.seq}, doc_id=META_DOC_ID))
        self.last_seq = entry.seq
        self._pending[entry.event_id] = entry

    def take_back(self, entry: PendingEvent) -> None:
        """Undo `add` after the history write failed (last_seq stays: seq is used)."""
        try:
            self._events.remove(doc_ids=[entry.seq])
        except OSError as exc:
            # It stays pending: it will still be sent, and the next start adds it to the history.
            logger.error("seq %d stays in the outbox: could not take it back (%s)", entry.seq, exc)
            return
        del self._pending[entry.event_id]

    def acknowledge(self, event_ids: set[str]) -> int:
        known = [event_id for event_id in event_ids if event_id in self._pending]
        if not known:
            return 0
        with self._resyncing_on_failure():
            self._events.remove(doc_ids=[self._pending[event_id].seq for event_id in known])
        for event_id in known:
            del self._pending[event_id]
        return len(known)

    def reject(self, rejections: Iterable[Rejection], rejected_at: datetime) -> list[Rejection]:
        """Move these pending events to the rejected table in one line; others are ignored."""
        moving = {r.event_id: r for r in rejections}
        moving = {eid: r for eid, r in moving.items() if eid in self._pending}
        if not moving:
            return []
        seqs = [self._pending[event_id].seq for event_id in moving]
        with self._resyncing_on_failure(), self._storage.batch():
            for seq, rejection in zip(seqs, moving.values(), strict=True):
                kept = {
                    "event": self._events.get(doc_id=seq),
                    "rejected_at": rejected_at.isoformat(),
                }
                kept |= {"reason": rejection.reason, "detail": rejection.detail}
                self._rejected.upsert(Document(kept, doc_id=seq))
            self._events.remove(doc_ids=seqs)
        for event_id in moving:
            del self._pending[event_id]
        self._rejected_total = len(self._rejected)
        return list(moving.values())

    def rejected(self) -> list[RejectedEvent]:
        return _readable_rejected(self._rejected.all())

    def rejected_count(self) -> int:
        return self._rejected_total

    def requeue(self, event_ids: Collection[str] | None) -> list[RejectedEvent]:
        """Move rejected events (all when `event_ids` is None) back to the outbox in one line.

        An entry that cannot be read, or whose event or seq is already in the outbox, stays.
        """
        chosen = [
            (doc.doc_id, found)
            for doc in sorted(self._rejected.all(), key=lambda doc: doc.doc_id)
            if (found := _parse_rejected(doc)) is not None
            and (event_ids is None or found.event.event_id in event_ids)
            and self._can_return(found.event)
        ]
        if not chosen:
            return []
        returning = [PendingEvent.of(found.event) for _, found in chosen]
        with self._resyncing_on_failure(), self._storage.batch():
            for entry in returning:
                self._events.insert(Document(entry.document(), doc_id=entry.seq))
            self._rejected.remove(doc_ids=[doc_id for doc_id, _ in chosen])
        self._pending.update((entry.event_id, entry) for entry in returning)
        self._pending = dict(sorted(self._pending.items(), key=lambda item: item[1].seq))
        self._rejected_total = len(self._rejected)
        return [found for _, found in chosen]

    def resync(self) -> None:
        """After a failed write, believe the file (see the module's docstring). Pending events
        memory already holds keep their bytes; one whose line landed although the write failed
        is read back from the file."""
        try:
            docs = self._events.all()  # the storage forgot its copy: this reads the file
            stored_last = self._stored_last_seq() or 0
            self._rejected_total = len(self._rejected)
        except OSError as exc:
            logger.error("cannot re-read the outbox after a failed write: %s", exc)
            return
        known: dict[tuple[int, object], PendingEvent] = {
            (entry.seq, entry.event_id): entry for entry in self._pending.values()
        }
        entries = [known.get((doc.doc_id, doc.get("event_id"))) for doc in docs]
        unknown = [doc for doc, entry in zip(docs, entries, strict=True) if entry is None]
        read_back, _ = parse_events(unknown, self.path)  # none unless memory missed a write
        pending = [entry for entry in entries if entry is not None]
        pending += [PendingEvent.of(event) for event in read_back]
        pending.sort(key=lambda entry: entry.seq)
        self._pending = {entry.event_id: entry for entry in pending}
        self.last_seq = max(self.last_seq, stored_last, *(entry.seq for entry in pending))

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _resyncing_on_failure(self) -> Iterator[None]:
        try:
            yield
        except OSError:
            self.resync()
            raise

    def _can_return(self, event: Event) -> bool:
        if event.event_id in self._pending or self._events.contains(doc_id=event.seq):
            logger.error("rejected seq %d stays set aside: the outbox holds it already", event.seq)
            return False
        return True

    def _stored_last_seq(self) -> int | None:
        meta = self._meta.get(doc_id=META_DOC_ID)
        stored = meta.get("last_seq") if meta is not None else None
        return stored if isinstance(stored, int) and not isinstance(stored, bool) else None

    def _drop_entries(self, bad_doc_ids: list[int]) -> None:
        kept = keep_aside(self.path, self.path.read_bytes())
        self._events.remove(doc_ids=bad_doc_ids)
        logger.error(
            "dropped %d invalid outbox entries; original kept in %s", len(bad_doc_ids), kept
        )
