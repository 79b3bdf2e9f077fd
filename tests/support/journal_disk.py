"""Test helpers: a sample event draft factory, a disk that fills up, a clock set by hand, and (run
as a program) writers to be killed.

    python -m tests.support.journal_disk DATA_DIR HISTORY_MAX_ENTRIES

opens the real Journal in DATA_DIR, prints `ready`, then records events for ever, printing each
event_id (flushed) only after record() has returned.

    python -m tests.support.journal_disk --compacting LOG_FILE WINDOW

opens a TinyDB on the journal's storage at LOG_FILE, set to compact after EVERY write, prints
`ready`, then for n = 1, 2, ... inserts document n and removes document n - WINDOW in one batch,
printing n once the write (and its compaction) returned. The crash tests kill both with SIGKILL.
"""

import errno
import hashlib
import os
import sys
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from tinydb.table import Document

from device.journal.durable_files import write_fully
from device.journal.journal import Journal
from device.journal.outbox import PendingEvent
from device.journal.storage import AppendLogStorage, open_log_db
from device.verdict.events import EventDraft
from gatescan.testing.samples import sample_draft
from protocol.messages import Event


def make_draft(*, ts: datetime | None = None, boot_id: str = "boot-1") -> EventDraft:
    """A plausible CCCD entry (Vietnamese name included, to check UTF-8 survives the files), all
    but its seq: the journal gives it."""
    event_id = f"ev-{uuid.uuid4().hex}"
    code = f"001090012345||Nguyễn Văn An|01011990|Nam|Hà Nội|01012021#{event_id}".encode()
    return sample_draft(
        event_id=event_id,
        boot_id=boot_id,
        ts=ts or datetime.now(UTC),
        subject_id="001090012345",
        subject_name="Nguyễn Văn An",
        code_sha256=hashlib.sha256(code).hexdigest(),
        code_length=len(code),
    )


class FlakyDisk:
    """The write call of a disk that can run out of space. A write that does not fit writes half
    its bytes and fails with ENOSPC, as on a full filesystem. `script` gives the fate of the next
    writes in turn (True: fits); once it is used up, `full` decides."""

    def __init__(self) -> None:
        self.script: list[bool] = []
        self.full = False

    def write(self, fd: int, data: bytes) -> None:
        fits = self.script.pop(0) if self.script else not self.full
        if not fits:
            os.write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write_fully(fd, data)


class SetClock:
    """A clock the test moves by hand (the journal only asks it for the date)."""

    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def is_synced(self) -> bool:
        return True


COMPACTING_TABLE = "docs"
PADDING = "Nguyễn Văn An, Hà Nội"  # Vietnamese text, written and read back exactly


def compacting_doc(n: int) -> dict[str, object]:
    return {"n": n, "padding": PADDING}


def compact_for_ever(path: Path, window: int) -> NoReturn:
    with open_log_db(path, compact_ratio=1, compact_min_entries=0) as db:
        storage, docs = db.storage, db.table(COMPACTING_TABLE)
        assert isinstance(storage, AppendLogStorage)
        n = max((doc.doc_id for doc in docs.all()), default=0)
        print("ready", flush=True)
        while True:
            n += 1
            with storage.batch():  # 2 entries over the live count: compacts every time
                docs.insert(Document(compacting_doc(n), doc_id=n))
                docs.remove(doc_ids=[n - window])
            print(n, flush=True)


NOON = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def record_one(journal: Journal, ts: datetime = NOON) -> str:
    """Record a fresh draft; its event id."""
    return journal.record(make_draft(ts=ts)).event_id


def record_for_seq(journal: Journal) -> int:
    """Record one more event and return its seq: what the journal hands out next."""
    return journal.record(make_draft(ts=NOON)).seq


def event_ids(events: Iterable[Event | PendingEvent]) -> list[str]:
    return [event.event_id for event in events]


def main(argv: list[str]) -> int:
    if argv[0] == "--compacting":
        compact_for_ever(Path(argv[1]), int(argv[2]))
    data_dir, history_max_entries = Path(argv[0]), int(argv[1])
    boot_id = uuid.uuid4().hex[:12]
    with Journal(data_dir, history_max_entries=history_max_entries) as journal:
        print("ready", flush=True)
        while True:
            event = journal.record(make_draft(boot_id=boot_id))
            print(event.event_id, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
