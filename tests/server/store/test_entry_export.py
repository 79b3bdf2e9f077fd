"""Export of stored entries to JSON Lines and CSV, from a real SQLite store."""

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gatescan.testing.samples import sample_event
from protocol.messages import Event
from server.store.database import Store
from server.store.entry_export import FIELDS, csv_cell, export_entries

RECEIVED = datetime(2025, 3, 1, 1, 0, 5, 250000, tzinfo=UTC)
NAME = "Nguyễn Thị Ánh Tuyết"


def make_event(event_id: str, **fields: Any) -> Event:
    defaults: dict[str, Any] = {
        "site_id": "Trường THPT Chu Văn An",
        "seq": 7,
        "ts": datetime(2025, 3, 1, 1, 0, 0, tzinfo=UTC),
        "subject_id": "001203004567",
        "subject_name": NAME,
        "code_sha256": "cd" * 32,
        "code_length": 96,
    }
    return sample_event(event_id=event_id, **{**defaults, **fields})


def raw_event(event_id: str, code_text: str, **fields: Any) -> Event:
    """A raw (non-CCCD) code whose text the site keeps: the one field that holds any text."""
    digest = "cd" * 32
    raw = {
        "credential_type": "raw",
        "subject_id": digest,
        "subject_name": "",
        "code_sha256": digest,
    }
    return make_event(event_id, code_text=code_text, **{**raw, **fields})


def read_csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_jsonl_writes_one_object_per_entry_with_every_event_field(store: Store) -> None:
    events = [make_event("evt-00000001"), raw_event("evt-00000002", "Xin chào")]
    store.add_events(events, RECEIVED)
    out = io.BytesIO()

    count = export_entries(store, "jsonl", out)

    lines = out.getvalue().decode("utf-8").splitlines()
    assert count == len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert [Event.model_validate(record) for record in records] == events
    assert list(records[0]) == list(FIELDS)
    assert records[0]["received_at"] == "2025-03-01T01:00:05.250000Z"
    assert NAME.encode("utf-8") in out.getvalue()  # readable UTF-8, not \\u escapes


def test_csv_starts_with_a_bom_and_round_trips_vietnamese(store: Store) -> None:
    store.add_events(
        [make_event("evt-00000001"), raw_event("evt-00000002", "Số 5, phố Huế")], RECEIVED
    )
    out = io.BytesIO()

    count = export_entries(store, "csv", out)

    data = out.getvalue()
    assert data.startswith(b"\xef\xbb\xbf")  # Excel reads UTF-8 only when told so by a BOM
    card, raw = read_csv(data)
    assert count == 2
    assert list(card) == list(FIELDS)
    assert card["subject_name"] == NAME
    assert card["site_id"] == "Trường THPT Chu Văn An"
    assert raw["code_text"] == "Số 5, phố Huế"
    assert card["clock_synced"] == "true"
    assert card["ts"] == "2025-03-01T01:00:00Z"


@pytest.mark.parametrize(
    "dangerous",
    ['=HYPERLINK("http://x.example","bấm")', "+84 912", "-1+1", "@SUM(A1)", "\tTab", "\rCR"],
)
def test_csv_defuses_cells_excel_would_run_as_formulas(store: Store, dangerous: str) -> None:
    # A raw code's text may hold a formula, markup or a line break (a name may not: the protocol
    # refuses them), and a site id any printable text: stored as data, defused on the way out.
    code_text = dangerous + "\n<script>alert(1)</script>"
    site_id = dangerous if dangerous.isprintable() else "site"  # a label holds no TAB or CR
    store.add_events([raw_event("evt-00000001", code_text, site_id=site_id)], RECEIVED)
    csv_out, jsonl_out = io.BytesIO(), io.BytesIO()

    export_entries(store, "csv", csv_out)
    export_entries(store, "jsonl", jsonl_out)

    [row] = read_csv(csv_out.getvalue())
    assert row["code_text"] == "'" + code_text
    assert row["site_id"] == ("'" + dangerous if site_id == dangerous else "site")
    assert json.loads(jsonl_out.getvalue())["code_text"] == code_text  # data, not a sheet


def test_export_filters_by_time_and_device_and_counts_what_it_wrote(store: Store) -> None:
    base = datetime(2025, 3, 1, tzinfo=UTC)
    store.add_events(
        [
            make_event("evt-00000001", ts=base),
            make_event("evt-00000002", ts=base + timedelta(hours=1)),
            make_event("evt-00000003", ts=base + timedelta(hours=1), device_id="gate-02"),
        ],
        RECEIVED,
    )
    out = io.BytesIO()

    count = export_entries(
        store, "csv", out, since=base + timedelta(minutes=30), device_id="gate-01"
    )

    assert count == 1
    assert [row["event_id"] for row in read_csv(out.getvalue())] == ["evt-00000002"]


def test_export_of_an_empty_store_writes_only_the_header(store: Store) -> None:
    csv_out, jsonl_out = io.BytesIO(), io.BytesIO()

    assert export_entries(store, "csv", csv_out) == 0
    assert export_entries(store, "jsonl", jsonl_out) == 0

    assert csv_out.getvalue().decode("utf-8-sig") == ",".join(FIELDS) + "\r\n"
    assert jsonl_out.getvalue() == b""


def test_export_writes_to_a_utf8_text_file_and_leaves_binary_streams_open(
    store: Store, tmp_path: Path
) -> None:
    store.add_events([make_event("evt-00000001")], RECEIVED)
    path = tmp_path / "entries.jsonl"
    binary = io.BytesIO()

    with path.open("w", encoding="utf-8", newline="") as text_file:
        export_entries(store, "jsonl", text_file)
    export_entries(store, "jsonl", binary)

    assert not binary.closed
    assert path.read_bytes() == binary.getvalue()
    assert json.loads(path.read_text(encoding="utf-8"))["subject_name"] == NAME


def test_export_refuses_a_text_stream_that_cannot_hold_vietnamese(store: Store) -> None:
    latin = io.TextIOWrapper(io.BytesIO(), encoding="cp1252")

    with pytest.raises(ValueError, match="not UTF-8"):
        export_entries(store, "csv", latin)


def test_export_refuses_an_unknown_format(store: Store) -> None:
    with pytest.raises(ValueError, match="unknown export format 'xlsx'"):
        export_entries(store, "xlsx", io.BytesIO())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "defused"),
    [
        ("x;=1+1", "x;'=1+1"),  # Excel in a locale whose list separator is ";"
        ("x\t=1+1", "x\t'=1+1"),  # pasted or opened as tab-separated text
        ("x\t \t@SUM(A1)", "x\t \t'@SUM(A1)"),
        ("Nguyễn Văn An", "Nguyễn Văn An"),
        ("a - b", "a - b"),  # a minus inside a cell starts nothing
    ],
)
def test_a_formula_after_a_separator_excel_splits_at_is_defused(text: str, defused: str) -> None:
    assert csv_cell(text) == defused
