"""A person's own data (Vietnam's personal data protection law): what the store keeps about one
CCCD number or pass id, or one self check-in phone's subject (`tel-` and 20 hex digits: the
phone's keyed hash under its site's secret, server/checkin/declaration.py; the command makes it
from `--phone N --site S`), to export (`gatescan person export`) or to erase (`gatescan person
erase`).

What names a person here: the entries whose subject_id is the ID; the dead letters whose kept
payload (its first 4 KiB) holds the ID as a whole word (not inside a longer number or digest);
the audit rows about them (subject the ID, or the list subject "cccd:..."/"pass:..."); the
passes issued under the ID (a pass id); the allow and block list entries naming it.

An erasure deletes the entries and dead letters and removes the list entries (each touched site's
policy version grows, so its gates get the change) in ONE transaction, with a marker in
erased_subjects holding only the ID's SHA-256: the collector stores no event naming it again
(server/store/writes.py). It does not touch the audit log (rows are only ever added: who looked
at this person stays on record) nor the pass registry (`gatescan pass revoke`), and it cannot
reach the gates' own journals (each gate keeps its history on its SD card until its retention
days pass) nor backups made before it: `NOT_REACHED` says so, and the command prints it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, text

from protocol.site_policy import list_subject
from server.store.site_policy import bump_version
from server.store.tables import (
    audit_log_table,
    dead_letters_table,
    entries_table,
    erased_subjects_table,
    passes_table,
    site_lists_table,
)

# What an erasure cannot reach, said by the command and in docs/operations.md.
NOT_REACHED = (
    "the gates' own journals: each gate keeps its entries on its SD card until its retention"
    " days pass (and an event still in a gate's outbox is acked but not stored when it comes)",
    "backups made before this erasure (gatescan backup): a restore brings the data back,"
    " erase again after restoring",
    "the audit log: its rows about this person stay (who looked at them stays on record)",
    "the pass registry: a pass issued under this ID stays (gatescan pass revoke)",
)

_DEAD_LETTER_CHUNK = 500
# A self check-in's subject without a CCCD (server/checkin/declaration.py: `phone_subject_id`).
_PHONE_SUBJECT = re.compile(r"tel-[0-9a-f]{20}")


def subject_digest(subject_id: str) -> str:
    """The SHA-256 (hex) of a subject_id: what the erasure marker and its audit row keep."""
    return hashlib.sha256(subject_id.encode("utf-8")).hexdigest()


def person_subject(text_given: str) -> tuple[str, str]:
    """(the subject_id entries hold, the list subject) from a CCCD number or a pass id as typed,
    or a phone's `tel-...` subject (no list names one: its list subject is itself); ValueError
    for anything else."""
    if _PHONE_SUBJECT.fullmatch(text_given.strip()):
        return text_given.strip(), text_given.strip()
    subject = list_subject(text_given)
    return subject.split(":", 1)[1], subject


@dataclass
class PersonData:
    subject_id: str
    entries: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    passes: list[dict[str, Any]] = field(default_factory=list)
    lists: list[dict[str, Any]] = field(default_factory=list)
    erased_at: datetime | None = None  # an earlier erasure of this ID

    def to_json(self, exported_at: datetime) -> bytes:
        """The export: one JSON object, UTF-8, names exactly as stored (not escaped)."""
        document = {
            "subject_id": self.subject_id,
            "exported_at": exported_at,
            "erased_at": self.erased_at,
            "entries": self.entries,
            "dead_letters": self.dead_letters,
            "audit": self.audit,
            "passes": self.passes,
            "lists": self.lists,
            "not_included": [
                "the gates' own journals (each gate keeps its entries on its SD card until its"
                " retention days pass)",
                "backups (gatescan backup)",
            ],
        }
        return json.dumps(document, ensure_ascii=False, indent=2, default=_json_value).encode()


def _json_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"{type(value).__name__} in a person export")


def _names(subject_id: str) -> re.Pattern[bytes]:
    """The ID as a whole word in a payload: not part of a longer run of letters or digits (a
    12-digit CCCD number inside a digest or another number is someone else)."""
    return re.compile(rb"(?<![0-9A-Za-z])" + re.escape(subject_id.encode()) + rb"(?![0-9A-Za-z])")


def _dead_letters_naming(conn: Connection, subject_id: str) -> list[dict[str, Any]]:
    """The dead letters whose kept payload names the ID (read in chunks: the table is purged by
    retention, a rare admin command may read it whole)."""
    pattern = _names(subject_id)
    table = dead_letters_table
    found: list[dict[str, Any]] = []
    last = 0
    while True:
        rows = (
            conn.execute(
                select(table)
                .where(table.c.id > last)
                .order_by(table.c.id)
                .limit(_DEAD_LETTER_CHUNK)
            )
            .mappings()
            .all()
        )
        for row in rows:
            payload = bytes(row["payload"])
            if pattern.search(payload):
                letter = dict(row)
                letter["payload"] = payload.decode("utf-8", errors="replace")
                letter["payload_truncated"] = len(payload) < row["payload_size"]
                found.append(letter)
        if len(rows) < _DEAD_LETTER_CHUNK:
            return found
        last = rows[-1]["id"]


def find_person(engine: Engine, text_given: str) -> PersonData:
    """Everything the store keeps naming this CCCD number or pass id. ValueError for an ID of
    neither form."""
    subject_id, listed = person_subject(text_given)
    data = PersonData(subject_id)
    with engine.connect() as conn:
        entries = entries_table.c
        query = select(entries_table).where(entries.subject_id == subject_id)
        data.entries = [
            dict(row)
            for row in conn.execute(query.order_by(entries.ts, entries.event_id)).mappings()
        ]
        data.dead_letters = _dead_letters_naming(conn, subject_id)
        audit = audit_log_table.c
        query = select(audit_log_table).where(audit.subject.in_([subject_id, listed]))
        data.audit = [dict(row) for row in conn.execute(query.order_by(audit.id)).mappings()]
        passes = passes_table.c
        query = select(passes_table).where(passes.pass_id == subject_id)
        data.passes = [dict(row) for row in conn.execute(query).mappings()]
        lists = site_lists_table.c
        query = (
            select(lists.site_id, lists.kind, lists.subject, lists.added_at)
            .where(lists.subject == listed)
            .order_by(lists.site_id, lists.kind)
        )
        data.lists = [dict(row) for row in conn.execute(query).mappings()]
        marker = erased_subjects_table.c
        data.erased_at = conn.scalar(
            select(marker.erased_at).where(marker.subject_sha256 == subject_digest(subject_id))
        )
    return data


@dataclass(frozen=True)
class Erasure:
    subject_sha256: str
    entries: int
    dead_letters: int
    list_entries: tuple[tuple[str, str], ...]  # (site, allow/block) it was removed from
    erased_before: datetime | None  # an earlier erasure's time, if any

    @property
    def nothing(self) -> bool:
        return not (self.entries or self.dead_letters or self.list_entries)


def erase_person(engine: Engine, text_given: str, now: datetime) -> Erasure:
    """Delete the entries and dead letters naming this ID and its list entries, and keep (or
    keep again) its erasure marker, all in one transaction. Nothing is written when nothing names
    it (`Erasure.nothing`: an unknown ID, or one erased before with nothing new since).
    ValueError for an ID of neither form."""
    subject_id, listed = person_subject(text_given)
    digest = subject_digest(subject_id)
    marker = erased_subjects_table.c
    with engine.connect() as conn, conn.begin() as transaction:
        if conn.dialect.name == "postgresql":
            # Collectors' batches take SHARE (server/store/writes.py): this waits for theirs to
            # commit, and theirs wait for this one.
            conn.execute(text("LOCK TABLE erased_subjects IN EXCLUSIVE MODE"))
        before = conn.scalar(select(marker.erased_at).where(marker.subject_sha256 == digest))
        # The marker first: on SQLite this write takes the database's write lock, so what is read
        # and deleted below is not changed by a collector before this commits.
        conn.execute(delete(erased_subjects_table).where(marker.subject_sha256 == digest))
        conn.execute(insert(erased_subjects_table).values(subject_sha256=digest, erased_at=now))
        entries = conn.execute(
            delete(entries_table).where(entries_table.c.subject_id == subject_id)
        ).rowcount
        letters = [row["id"] for row in _dead_letters_naming(conn, subject_id)]
        for start in range(0, len(letters), _DEAD_LETTER_CHUNK):
            ids = letters[start : start + _DEAD_LETTER_CHUNK]
            conn.execute(delete(dead_letters_table).where(dead_letters_table.c.id.in_(ids)))
        lists = site_lists_table.c
        listed_in = tuple(
            (str(site), str(kind))
            for site, kind in conn.execute(
                select(lists.site_id, lists.kind)
                .where(lists.subject == listed)
                .order_by(lists.site_id, lists.kind)
            )
        )
        if listed_in:
            conn.execute(delete(site_lists_table).where(lists.subject == listed))
            for site in sorted({site for site, _kind in listed_in}):
                bump_version(conn, site, now)
        erasure = Erasure(digest, int(entries), len(letters), listed_in, before)
        if erasure.nothing:
            transaction.rollback()  # nothing written (an earlier marker stays as it was)
    return erasure
