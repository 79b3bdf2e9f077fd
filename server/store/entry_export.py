"""Export stored entries as JSON Lines or CSV (`gatescan entries export`).

Both formats carry the same fields: every protocol.Event field, then received_at (the collector's
clock). Times are ISO 8601 in UTC (`2025-03-01T01:00:05.250000Z`) unless a time zone is given:
then in that zone with its offset (`2025-03-01T08:00:05.250000+07:00`), as the dashboard's
downloads give them (the site's zone) and `gatescan entries export --timezone` does.

JSON Lines is for programs; CSV is for people, who open it in Excel, so it starts with a
UTF-8 byte order mark (without it Excel reads Vietnamese names as mojibake) and cells that Excel
would run as a formula are defused.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import datetime, tzinfo
from typing import Any, BinaryIO, Literal, TextIO, cast

from protocol.messages import Event
from server.clock import in_zone
from server.store.database import Store, StoredEntry

ExportFormat = Literal["jsonl", "csv"]
FIELDS: tuple[str, ...] = (*Event.model_fields, "received_at")
TIME_FIELDS = ("ts", "received_at")

# Excel treats a cell starting with one of these as a formula (CSV injection, OWASP).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Where the list separator is ";" (locales with a decimal comma, Vietnamese among them) Excel
# splits a comma-separated file at ";" instead, so "x;=..." inside one field starts a cell too;
# pasted or opened as tab-separated text, a TAB splits it the same way ("x<TAB>=1+1").
_FORMULA_AFTER_SEPARATOR = re.compile(r"([;\t])(\s*)([=+\-@])")
_UTF8_BOM = "\ufeff"


def export_entries(
    store: Store,
    fmt: ExportFormat,
    out: TextIO | BinaryIO,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    device_id: str | None = None,
    tz: tzinfo | None = None,
) -> int:
    """Write entries with since <= ts < until (oldest first) to `out`; return how many. Times
    are in `tz` with its offset, or in UTC ("Z") when it is None.

    `out` may be a binary stream (UTF-8 is written) or a UTF-8 text stream opened with
    newline="" (the csv module writes its own line endings).
    """
    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"unknown export format {fmt!r}: use 'jsonl' or 'csv'")
    text_out, wrapper = _text_stream(out)
    entries = store.entries(since=since, until=until, device_id=device_id)
    rows = (entry_record(entry, tz) for entry in entries)
    try:
        count = _write_csv(rows, text_out) if fmt == "csv" else _write_jsonl(rows, text_out)
    finally:
        text_out.flush()
        if wrapper is not None:
            wrapper.detach()  # leave the caller's binary stream open
    return count


def entry_record(entry: StoredEntry, tz: tzinfo | None = None) -> dict[str, Any]:
    """One entry as JSON-ready values, in FIELDS order; times in `tz` (None: UTC)."""
    # pydantic writes UTC times as 2025-03-01T01:00:05.250000Z, the same for ts and received_at.
    record: dict[str, Any] = entry.model_dump(mode="json")
    if tz is not None:
        record.update({name: zoned_time(getattr(entry, name), tz) for name in TIME_FIELDS})
    return {name: record[name] for name in FIELDS}


def zoned_time(value: datetime, tz: tzinfo) -> str:
    """ISO 8601 in `tz` with its offset, e.g. 2026-11-26T11:17:01+07:00: what a person at the
    site reads, and still one exact instant for a program (each value carries its own offset,
    so a zone with summer time is right on both sides of the change)."""
    return in_zone(value, tz).isoformat()


def _write_jsonl(rows: Iterator[dict[str, Any]], out: TextIO) -> int:
    count = 0
    for row in rows:
        # ensure_ascii=False: names stay readable as UTF-8 ("Nguyễn", not "Nguy\u1ec5n").
        out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
        count += 1
    return count


def _write_csv(rows: Iterator[dict[str, Any]], out: TextIO) -> int:
    out.write(_UTF8_BOM)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(FIELDS)
    count = 0
    for row in rows:
        writer.writerow([csv_cell(row[name]) for name in FIELDS])
        count += 1
    return count


def csv_cell(value: Any) -> str:
    """A value as spreadsheet-safe text: no formula can start it, nor a cell that Excel cuts
    out of it at a ";" or a TAB."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = _FORMULA_AFTER_SEPARATOR.sub(r"\1\2'\3", str(value))
    if text.startswith(_FORMULA_STARTS):
        return "'" + text
    return text


def _text_stream(out: TextIO | BinaryIO) -> tuple[TextIO, io.TextIOWrapper[Any] | None]:
    if isinstance(out, io.RawIOBase | io.BufferedIOBase):
        wrapper = io.TextIOWrapper(cast(BinaryIO, out), encoding="utf-8", newline="")
        return wrapper, wrapper
    text = cast(TextIO, out)
    encoding = getattr(text, "encoding", None)  # None for io.StringIO
    if encoding is not None and codecs.lookup(encoding).name != "utf-8":
        raise ValueError(
            f"the output stream encodes {encoding}, not UTF-8: Vietnamese text would be lost;"
            " pass a binary stream (e.g. sys.stdout.buffer) or open the file as UTF-8"
        )
    return text, None
