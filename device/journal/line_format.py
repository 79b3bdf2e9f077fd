"""The line format of the journal's append-only logs (device/journal/storage.py), and its replay.

Each write is ONE line holding the documents it changed:

    <crc32 of the JSON, 8 hex digits> {"table": {"doc id": {document} or null (removed)}}\\n

JSON escapes control characters, so the payload never holds a newline, and the newline is written
last: a line without one is a write cut short by a kill. A complete line that fails its check
(checksum, JSON, shape) is damage, which a kill cannot leave. `replay` adds the good lines up and
says where the good part of the file ends and which line, if any, is damaged.
"""

import json
import zlib
from dataclasses import dataclass, field
from typing import Any

Tables = dict[str, dict[str, Any]]
Changes = dict[str, dict[str, Any]]  # table -> doc id -> the document, or None: removed


def encode_line(changes: Changes) -> bytes:
    """One self-checking line. JSON escapes control characters, so the payload holds no newline."""
    payload = _json(changes).encode()
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def encode_line_in_pieces(tables: Tables) -> bytes:
    """The same bytes as `encode_line(tables)`, made one document at a time: for a whole journal
    (a compaction of a backlog of 100,000 events is a line of tens of MB), so that the thread
    making it lets the others run between documents instead of holding the interpreter for the
    whole of one `json.dumps` (the frame loop would stall for as long, a third of a second)."""
    parts = [b"{"]
    for table_number, (name, docs) in enumerate(tables.items()):
        parts.append(b"%s%s:{" % (b"," if table_number else b"", _json(name).encode()))
        parts.append(
            b",".join(
                b"%s:%s" % (_json(doc_id).encode(), _json(doc).encode())
                for doc_id, doc in docs.items()
            )
        )
        parts.append(b"}")
    parts.append(b"}")
    payload = b"".join(parts)
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def decode_line(line: bytes) -> Changes | None:
    """The changes in one line (without its newline), or None if it fails its check."""
    checksum, payload = line[:8], line[9:]
    if line[8:9] != b" " or checksum.strip(b"0123456789abcdef"):
        return None
    if zlib.crc32(payload) != int(checksum, 16):
        return None
    try:
        changes = json.loads(payload)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return changes if _is_change_set(changes) else None


def _is_change_set(data: Any) -> bool:
    tables = data.values() if isinstance(data, dict) else [None]
    docs = [item for table in tables if isinstance(table, dict) for item in table.items()]
    return all(isinstance(table, dict) for table in tables) and all(
        doc_id.isdecimal() and (doc is None or isinstance(doc, dict)) for doc_id, doc in docs
    )


def apply_changes(state: Tables, changes: Changes) -> None:
    for name, docs in changes.items():
        table = state.setdefault(name, {})
        for doc_id, doc in docs.items():
            if doc is None:
                table.pop(doc_id, None)
            else:
                table[doc_id] = doc


@dataclass
class Replayed:
    """What the file's lines add up to, and where its good part ends."""

    state: Tables = field(default_factory=dict)
    entries: int = 0  # document entries in the good lines
    good_end: int = 0  # bytes of the good lines
    bad_line: int | None = None  # number (from 1) of the first complete line failing its check


def replay(raw: bytes) -> Replayed:
    """Apply the lines of a log in order, up to the first damaged one; a torn tail is ignored."""
    replayed = Replayed()
    *complete, _torn_tail = raw.split(b"\n")
    for number, line in enumerate(complete, start=1):
        changes = decode_line(line)
        if changes is None:
            replayed.bad_line = number
            break
        apply_changes(replayed.state, changes)
        replayed.entries += sum(len(docs) for docs in changes.values())
        replayed.good_end += len(line) + 1
    return replayed
