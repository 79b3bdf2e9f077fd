"""A TinyDB storage that survives `kill -9` and power loss: each write replaces the file atomically.

TinyDB's default JSONStorage rewrites its file in place (seek, write, fsync, truncate), so a process
killed mid-write leaves a file that is neither the old state nor the new one. This storage writes
the whole state to a temp file in the same directory, fsyncs it, renames it over the old file and
fsyncs the directory: a reader (or the next start) sees either the old file or the new one.

Writes go through to disk before `write()` returns (no write-behind cache), so a TinyDB operation
is durable when it returns. The in-memory copy only saves re-reading and re-parsing the file: it
is dropped whenever a write fails, so the next read shows exactly what is on disk.

Tables named in `append_only_tables` are assumed never to change a document in place (insert and
remove only); their documents are serialized once and the text is reused on later writes, which
keeps the cost of a write close to the cost of copying the bytes.
"""

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tinydb.storages import Storage

logger = logging.getLogger(__name__)

# Writes all of `data` to the open file descriptor. The seam for simulating a full or failing disk.
FileWriter = Callable[[int, bytes], None]

TEMP_SUFFIX = ".tmp"
CORRUPT_MARK = ".corrupt-"

Tables = dict[str, dict[str, Any]]


def write_fully(fd: int, data: bytes) -> None:
    """Write every byte (os.write may write fewer than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new entry in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_directory_durably(directory: Path) -> None:
    """Create `directory` and its missing parents, fsyncing each parent that gained an entry."""
    missing = [p for p in (directory, *directory.parents) if not p.exists()]
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
        fsync_directory(path.parent)


def set_aside(path: Path, *, copy: bool = False) -> Path:
    """Rename (or copy) a bad file to `<name>.corrupt-<UTC time>` so people can inspect it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}{CORRUPT_MARK}{stamp}")
    counter = 1
    while target.exists():
        target = path.with_name(f"{path.name}{CORRUPT_MARK}{stamp}-{counter}")
        counter += 1
    if copy:
        target.write_bytes(path.read_bytes())
    else:
        os.replace(path, target)
    fsync_directory(path.parent)
    return target


def remove_stray_temp_files(directory: Path, name_prefix: str = "") -> list[Path]:
    """Delete temp files that a killed writer left behind; they never hold committed data."""
    removed = []
    for stray in directory.glob(f".{name_prefix}*{TEMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            stray.unlink()
            removed.append(stray)
    if removed:
        logger.info("removed %d temp file(s) left by an interrupted write", len(removed))
    return removed


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _is_tinydb_state(data: Any) -> bool:
    """TinyDB's file shape: {table: {doc_id (an integer as text): {field: value}}}."""
    if not isinstance(data, dict):
        return False
    for table in data.values():
        if not isinstance(table, dict):
            return False
        for doc_id, doc in table.items():
            if not (isinstance(doc, dict) and doc_id.isdecimal()):
                return False
    return True


class AtomicJSONStorage(Storage):
    """TinyDB storage in one JSON file, replaced atomically and fsynced on every write."""

    def __init__(
        self,
        path: Path | str,
        *,
        writer: FileWriter = write_fully,
        append_only_tables: Iterable[str] = (),
    ) -> None:
        self._path = Path(path)
        self._writer = writer
        self._append_only = frozenset(append_only_tables)
        # Per append-only table: doc_id -> (the document object, its '"id":{...},' JSON as bytes).
        self._encoded: dict[str, dict[str, tuple[dict[str, Any], bytes]]] = {}
        self._batching = False
        self._batch_dirty = False
        self.set_aside_as: Path | None = None  # where a corrupt file found on open was moved
        remove_stray_temp_files(self._path.parent, self._path.name)
        self._state: Tables | None = self._load()
        self._state_loaded = True

    @property
    def path(self) -> Path:
        return self._path

    def read(self) -> Tables | None:
        if not self._state_loaded:
            self._state = self._load()
            self._state_loaded = True
        return self._state

    def write(self, data: Tables) -> None:
        self._state = data
        self._state_loaded = True
        if self._batching:
            self._batch_dirty = True
            return
        self._commit(data)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """TinyDB writes inside the block reach the disk as ONE atomic replace, at its end."""
        if self._batching:
            raise RuntimeError("batches do not nest")
        self._batching, self._batch_dirty = True, False
        try:
            yield
        except BaseException:
            self._forget_state()
            raise
        finally:
            self._batching = False
        if self._batch_dirty and self._state is not None:
            self._commit(self._state)

    def close(self) -> None:
        self._forget_state()

    def _forget_state(self) -> None:
        # TinyDB changed the cached dict before asking us to write it; after a failure the only
        # trustworthy state is the file, so read it again next time.
        self._state, self._state_loaded = None, False
        self._encoded.clear()

    def _commit(self, data: Tables) -> None:
        try:
            self._replace_file(self._encode(data))
        except BaseException:
            self._forget_state()
            raise

    def _replace_file(self, payload: bytes) -> None:
        directory = self._path.parent
        fd, temp_name = tempfile.mkstemp(
            dir=directory, prefix=f".{self._path.name}.", suffix=TEMP_SUFFIX
        )
        try:
            try:
                self._writer(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp_name, self._path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise
        fsync_directory(directory)

    def _encode(self, data: Tables) -> bytes:
        # One flat list and one join: the file is copied in memory once, whatever its size.
        pieces = [b"{"]
        for name, table in data.items():
            pieces.append(f"{_dumps(name)}:".encode())
            if name in self._append_only:
                pieces.append(b"{")
                pieces.extend(self._encode_append_only(name, table))
                if table:
                    pieces[-1] = pieces[-1][:-1]  # the last document's trailing comma
                pieces.append(b"},")
            else:
                pieces.append(_dumps(table).encode() + b",")
        if data:
            pieces[-1] = pieces[-1][:-1]
        pieces.append(b"}")
        return b"".join(pieces)

    def _encode_append_only(self, name: str, table: dict[str, Any]) -> list[bytes]:
        """Each document as `"id":{...},`, serialized only the first time it is written."""
        known = self._encoded.get(name, {})
        current: dict[str, tuple[dict[str, Any], bytes]] = {}
        for doc_id, doc in table.items():
            entry = known.get(doc_id)
            # Same object => same content, since these tables never change a document in place.
            if entry is None or entry[0] is not doc:
                entry = (doc, f"{_dumps(doc_id)}:{_dumps(doc)},".encode())
            current[doc_id] = entry
        self._encoded[name] = current  # also forgets the text of removed documents
        return [text for _, text in current.values()]

    def _load(self) -> Tables | None:
        self._encoded.clear()
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return None
        if not raw.strip():
            # This storage never writes an empty file: one means a write that was not atomic.
            self._set_aside_corrupt("empty file")
            return None
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            self._set_aside_corrupt(f"not valid JSON ({str(exc)[:120]})")
            return None
        if not _is_tinydb_state(data):
            self._set_aside_corrupt("not a TinyDB document tree")
            return None
        return data

    def _set_aside_corrupt(self, problem: str) -> None:
        self.set_aside_as = set_aside(self._path)
        logger.error(
            "journal file %s is corrupt: %s; moved it to %s and started it empty",
            self._path,
            problem,
            self.set_aside_as.name,
        )
