"""A TinyDB storage whose write costs what changed, not what the file holds; it survives `kill -9`.

TinyDB's Storage interface reads and writes the whole database, and its Table rebuilds the whole
table dict on every write (`Table._update_table`). Measured at 5,000 documents (2-core x86 VM):
TinyDB's own insert costs 1.3 ms (p99 2.5 ms) before any I/O, finding the changed documents in the
dict handed to `write()` another 0.6 ms, and rewriting the file (atomic replace) ~10 ms; at 100
documents all of it is under 1.5 ms. So the change set is taken where it is made, not rediscovered:

- `IncrementalTable` (installed by `open_log_db`) replaces `_update_table`: TinyDB's updater edits
  the live table through `_TrackedTable`, which notes each document it sets, removes or hands out
  (an update changes a document in place). The storage is told exactly those documents. This
  overrides a private TinyDB method (pyproject pins tinydb < 5); the tests replay a tour of the
  Table API against TinyDB's MemoryStorage, so a release that changes it fails them.
- `AppendLogStorage` appends them as ONE checked line per write (device/journal/line_format.py),
then fdatasyncs. A batch (`with storage.batch():`) makes several TinyDB calls one line, hence one
  atomic change.

Reading replays the lines. A last line without its newline is a write cut short by a kill: it
is ignored and cut off before the next append. A complete line that fails its check is damage (a
kill cannot leave one; the newline is written last), even when it is the last line, since after
compaction one line holds everything: replay stops there, the rest of the file is kept aside in
`<name>.corrupt-<UTC time>` (logged as an error) and the file is cut back to the good lines.
Nothing raises. A write that fails (full
disk) cuts its partial line off again, and the storage forgets its memory: the file is the truth.

Compaction rewrites the live state as one line by atomic replace (temp file, fsync, rename, fsync
of the directory), when the log holds more than `compact_ratio` times the live documents and more
than `compact_min_entries` entries. The journal's outbox writes two entries per event (the event
and the seq counter), so a log that only grows holds 2x; the default 3x keeps rewrites rare. A kill
during compaction leaves either the old log or the new one, plus a temp file removed at next open.
It serializes every live document: ~40 ms for 5,000 events, about once per 3,000 writes while such
a backlog drains; a rare stall that comes after the light, never before it.
TinyDB's own `write()` (drop_table, a plain Table) is served by the same rewrite.

The line format and the durable file operations live in device/journal/line_format.py and
device/journal/durable_files.py; their names are importable from here too, as before.
"""

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any, cast

from tinydb import TinyDB
from tinydb.storages import Storage
from tinydb.table import Table

from device.journal.durable_files import (
    TEMP_SUFFIX,
    FileWriter,
    fsync_directory,
    keep_aside,
    remove_stray_temp_files,
    write_fully,
)
from device.journal.line_format import (
    Changes,
    Replayed,
    Tables,
    encode_line,
    encode_line_in_pieces,
    replay,
)

__all__ = ["AppendLogStorage", "IncrementalTable", "LogTinyDB", "open_log_db"]

logger = logging.getLogger(__name__)

COMPACT_RETRY_BYTES = 64 * 1024  # after a failed compaction, wait for this much more log


# --- the storage ----------------------------------------------------------------------------------


class AppendLogStorage(Storage):
    """TinyDB storage in one append-only log file; every write is durable when it returns."""

    def __init__(
        self,
        path: Path | str,
        *,
        writer: FileWriter = write_fully,
        compact_ratio: float = 3.0,
        compact_min_entries: int = 1000,
    ) -> None:
        if compact_ratio < 1 or compact_min_entries < 0:
            raise ValueError("compact_ratio must be >= 1 and compact_min_entries >= 0")
        self._path = Path(path)
        self._writer = writer
        self._compact_ratio, self._compact_min = compact_ratio, compact_min_entries
        self._fd: int | None = None  # opened at the first append: readers hold no descriptor
        self._state: Tables | None = None  # None: not loaded, or forgotten after a failure
        self._entries = 0  # document entries in the file
        self._good_end = 0  # bytes of good lines; anything after them is cut off before appending
        self._cut_tail = False
        self._batch: Changes | None = None
        self._batch_rewrites = False
        self._compact_retry_at = 0
        self.set_aside_as: Path | None = None  # where damaged lines found on open were kept
        remove_stray_temp_files(self._path.parent, self._path.name)
        self._loaded()

    @property
    def path(self) -> Path:
        return self._path

    def read(self) -> Tables | None:
        return self._loaded() or None

    def write(self, data: Tables) -> None:
        """TinyDB's whole-state write (drop_table, a plain Table): rewrite the file."""
        self._state = data
        if self._batch is not None:
            self._batch_rewrites = True
            return
        self._guarded(self._rewrite)

    def update_table(
        self, name: str, updater: Callable[[Any], None], id_class: Callable[[str], Any]
    ) -> None:
        """Run TinyDB's updater on the live table and write only the documents it touched."""
        state = self._loaded()
        docs = state.get(name, {})
        tracked = _TrackedTable(docs, id_class)
        try:
            updater(tracked)
        except BaseException:
            if tracked.touched:
                self._forget_state()
            raise
        if tracked.touched:
            state[name] = docs
            self._write_changes({name: tracked.touched})

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """TinyDB writes inside the block reach the disk as ONE line (or a rewrite), at its end."""
        if self._batch is not None:
            raise RuntimeError("batches do not nest")
        self._batch, self._batch_rewrites = {}, False
        try:
            yield
            changes, rewrites = self._batch, self._batch_rewrites
        except BaseException:
            self._forget_state()
            raise
        finally:
            self._batch = None
        if rewrites:
            self._guarded(self._rewrite)
        elif changes:
            self._write_changes(changes)

    def close(self) -> None:
        self._close_fd()
        self._forget_state()

    def _loaded(self) -> Tables:
        if self._state is None:
            self._state = self._load()
        return self._state

    def _forget_state(self) -> None:
        # TinyDB's change is already in the live dicts; after a failure only the file is true.
        self._state = None

    def _guarded(self, action: Callable[[], None]) -> None:
        try:
            action()
        except BaseException:
            self._forget_state()
            raise

    def _write_changes(self, changes: Changes) -> None:
        if self._batch is not None:
            for name, docs in changes.items():
                self._batch.setdefault(name, {}).update(docs)
            return
        self._guarded(lambda: self._append(encode_line(changes)))
        self._entries += sum(len(docs) for docs in changes.values())
        self._compact_if_worth_it()

    def _append(self, line: bytes) -> None:
        fd = self._append_fd()
        try:
            self._writer(fd, line)
            os.fdatasync(fd)
        except BaseException:
            self._cut_tail = True  # a partial line must not stay in front of the next one
            with contextlib.suppress(OSError):
                self._cut_off_tail(fd)
            raise
        self._good_end += len(line)

    def _append_fd(self) -> int:
        if self._fd is None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            self._fd = os.open(self._path, flags, 0o600)
            fsync_directory(self._path.parent)  # the file may be new
        if self._cut_tail:
            self._cut_off_tail(self._fd)
        return self._fd

    def _cut_off_tail(self, fd: int) -> None:
        os.ftruncate(fd, self._good_end)
        os.fdatasync(fd)
        self._cut_tail = False

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _compact_if_worth_it(self) -> None:
        live = sum(len(docs) for docs in self._loaded().values())
        limit = max(self._compact_min, self._compact_ratio * live)
        if self._entries <= limit or self._good_end < self._compact_retry_at:
            return
        try:
            self._rewrite()
        except OSError as exc:
            # The log itself is whole and durable: compaction only saves space, so try later.
            self._compact_retry_at = self._good_end + COMPACT_RETRY_BYTES
            logger.warning(
                "could not compact %s (it stays valid, only larger): %s", self._path, exc
            )

    def _rewrite(self) -> None:
        state = self._loaded()
        line = encode_line_in_pieces(state)
        temp_name = self._write_temp_file(line)
        try:
            os.replace(temp_name, self._path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise
        # From here on the path names the new file: appends must not go to the replaced one.
        self._close_fd()
        self._good_end, self._cut_tail = len(line), False
        self._entries = sum(len(docs) for docs in state.values())
        fsync_directory(self._path.parent)

    def _write_temp_file(self, payload: bytes) -> str:
        fd, temp_name = tempfile.mkstemp(
            dir=self._path.parent, prefix=f".{self._path.name}.", suffix=TEMP_SUFFIX
        )
        try:
            try:
                self._writer(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise
        return temp_name

    def _load(self) -> Tables:
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            raw = b""
        replayed = replay(raw)
        self._entries, self._good_end = replayed.entries, replayed.good_end
        if replayed.bad_line is not None:
            self._keep_damage_aside(raw, replayed)
        elif replayed.good_end < len(raw):
            logger.warning(
                "%s: ignored an incomplete last write (%d bytes): the writer was stopped mid-line",
                self._path,
                len(raw) - replayed.good_end,
            )
            self._cut_tail = True
        return replayed.state

    def _keep_damage_aside(self, raw: bytes, replayed: Replayed) -> None:
        self.set_aside_as = keep_aside(self._path, raw[replayed.good_end :])
        logger.error(
            "%s: line %d is damaged; kept it and the %d bytes after it in %s; read up to it",
            self._path,
            replayed.bad_line,
            len(raw) - replayed.good_end,
            self.set_aside_as.name,
        )
        fd = os.open(self._path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, replayed.good_end)
            os.fsync(fd)
        finally:
            os.close(fd)


class _TrackedTable(MutableMapping[Any, Any]):
    """The live table as TinyDB's updaters expect it (integer ids), noting what they touch."""

    def __init__(self, docs: dict[str, Any], id_class: Callable[[str], Any]) -> None:
        self._docs = docs
        self._id_class = id_class
        self.touched: dict[str, Any] = {}  # doc id -> the document, or None: removed

    def __getitem__(self, doc_id: Any) -> Any:
        key = str(doc_id)
        doc = self._docs[key]
        self.touched[key] = doc  # TinyDB updates a document in place, after getting it here
        return doc

    def __setitem__(self, doc_id: Any, doc: Any) -> None:
        key = str(doc_id)
        self._docs[key] = doc
        self.touched[key] = doc

    def __delitem__(self, doc_id: Any) -> None:
        key = str(doc_id)
        del self._docs[key]
        self.touched[key] = None

    def __contains__(self, doc_id: object) -> bool:
        return str(doc_id) in self._docs  # a look that touches nothing

    def __iter__(self) -> Iterator[Any]:
        return (self._id_class(key) for key in self._docs)

    def __len__(self) -> int:
        return len(self._docs)


class IncrementalTable(Table):
    """A TinyDB table that hands the storage only the documents a write touched."""

    def _update_table(self, updater: Callable[[dict[int, Mapping[Any, Any]]], None]) -> None:
        storage = self.storage
        if not isinstance(storage, AppendLogStorage):
            super()._update_table(updater)
            return
        storage.update_table(
            self.name, cast(Callable[[Any], None], updater), self.document_id_class
        )
        self.clear_cache()


class LogTinyDB(TinyDB):
    table_class = IncrementalTable


def open_log_db(path: Path, writer: FileWriter = write_fully, **options: Any) -> TinyDB:
    """TinyDB on an AppendLogStorage at `path`; `options` go to the storage (compaction)."""
    return LogTinyDB(path, storage=AppendLogStorage, writer=writer, **options)
