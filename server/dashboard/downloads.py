"""Downloads: entries and tracing results as CSV or JSON, streamed.

CSV reuses server/store/entry_export.py's rules (UTF-8 with a byte order mark so Excel reads
Vietnamese, formula-like cells neutralised) and its column order, so a dashboard download and
`gatescan entries export` open the same way. Every time in a download (entries' ts and
received_at, a tracing result's visits, contacts, people and range) is in the site's time zone
with its offset (2026-11-26T11:17:01+07:00), as the pages show them; the file name too.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import datetime, tzinfo
from typing import Any, Literal

from fastapi.responses import StreamingResponse

from server.dashboard.reports.entries import EntryFilter, EntryRow, iter_entries
from server.dashboard.reports.tracing import TracingResult
from server.store.database import Store
from server.store.entry_export import FIELDS, TIME_FIELDS, csv_cell, zoned_time

UTF8_BOM = "\ufeff"
TRACING_FIELDS = (
    "visit_event_id",
    "visit_ts",
    "visit_device_id",
    "visit_site_id",
    "contact_subject_id",
    "contact_subject_name",
    "contact_ts",
    "contact_device_id",
    "contact_site_id",
    "contact_direction",
    "same_gate",
    "offset_min",
    "overlap_min",
)
_MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


def entries_export(
    store: Store,
    entry_filter: EntryFilter,
    fmt: Literal["csv", "json"],
    *,
    unmasked: bool,
    now: datetime,
    tz: tzinfo,
) -> StreamingResponse:
    """Matching entries, oldest first, masked unless `unmasked` (the caller checked the role);
    times in `tz` (the site's zone)."""
    rows = iter_entries(store, entry_filter)
    if not unmasked:
        rows = (row.masked_copy() for row in rows)
    records = (_entry_record(row, tz) for row in rows)
    body = _csv(FIELDS, records) if fmt == "csv" else _json_array(records)
    return _download(body, fmt, f"gatescan-entries-{now.astimezone(tz):%Y%m%d-%H%M%S}")


def tracing_export(
    result: TracingResult, fmt: Literal["csv", "json"], *, now: datetime, tz: tzinfo
) -> StreamingResponse:
    if fmt == "json":
        document = _zoned(result.model_dump(mode="python"), tz)
        body: Iterator[str] = iter([json.dumps(document, ensure_ascii=False, indent=1)])
    else:
        body = _csv(TRACING_FIELDS, _tracing_records(result, tz))
    return _download(body, fmt, f"gatescan-tracing-{now.astimezone(tz):%Y%m%d-%H%M%S}")


def _entry_record(row: EntryRow, tz: tzinfo) -> dict[str, Any]:
    record = row.model_dump(mode="json")
    record.update({name: zoned_time(getattr(row, name), tz) for name in TIME_FIELDS})
    return {name: record[name] for name in FIELDS}


def _zoned(value: Any, tz: tzinfo) -> Any:
    """A model_dump(mode="python") tree with every datetime as zoned ISO 8601 text."""
    if isinstance(value, datetime):
        return zoned_time(value, tz)
    if isinstance(value, dict):
        return {key: _zoned(item, tz) for key, item in value.items()}
    if isinstance(value, list):
        return [_zoned(item, tz) for item in value]
    return value


def _tracing_records(result: TracingResult, tz: tzinfo) -> Iterator[dict[str, Any]]:
    for visit in result.visits:
        base = {
            "visit_event_id": visit.event_id,
            "visit_ts": zoned_time(visit.ts, tz),
            "visit_device_id": visit.device_id,
            "visit_site_id": visit.site_id,
        }
        if not visit.contacts:
            yield base
        for contact in visit.contacts:
            yield {
                **base,
                "contact_subject_id": contact.subject_id,
                "contact_subject_name": contact.subject_name,
                "contact_ts": zoned_time(contact.ts, tz),
                "contact_device_id": contact.device_id,
                "contact_site_id": contact.site_id,
                "contact_direction": contact.direction,
                "same_gate": contact.same_gate,
                "offset_min": contact.offset_min,
                "overlap_min": contact.overlap_min,
            }


def _csv(fields: tuple[str, ...], records: Iterable[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write(UTF8_BOM)
    writer.writerow(fields)
    for count, record in enumerate(records, start=1):
        writer.writerow([_cell(record.get(name)) for name in fields])
        if count % 500 == 0:
            yield _drain(buffer)
    yield _drain(buffer)


def _cell(value: Any) -> str:
    """A number is written as it is: no formula starts with a digit, and "-5.0" (a contact five
    minutes before the visit) must stay a number, not become the text "'-5.0"."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return csv_cell(value)


def _json_array(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    yield "["
    for count, record in enumerate(records):
        yield ("," if count else "") + "\n" + json.dumps(record, ensure_ascii=False)
    yield "\n]\n"


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _download(body: Iterator[str], fmt: str, stem: str) -> StreamingResponse:
    encoded = (chunk.encode("utf-8") for chunk in body)
    return StreamingResponse(
        encoded,
        media_type=_MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{stem}.{fmt}"'},
    )
