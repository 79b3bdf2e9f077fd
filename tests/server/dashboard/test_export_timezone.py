"""Downloads give times in the site's time zone, with the offset (2026-03-02T10:00:00+07:00), as
the pages show them; `gatescan entries export` gives UTC unless told a zone (--timezone)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import URL

from server.accounts.users import Role
from server.dashboard.app import create_web_app
from server.dashboard.settings import WebSettings
from server.store.database import Store
from tests.support.web import FAST_HASHER, START, bearer, cccd_event, db_option

ALICE, BOB = "079190000001", "079190000002"
LOCAL = "2026-03-02T10:00:00+07:00"  # START (03:00 UTC) in Ho Chi Minh City
RECEIVED = START + timedelta(seconds=5, microseconds=250000)


@pytest.fixture
def stocked(store: Store) -> Store:
    """Alice at gate-1 at START, Bob at the same gate five minutes later."""
    store.add_events(
        [
            cccd_event(1, subject=ALICE, name="Nguyễn Văn An", ts=START),
            cccd_event(2, subject=BOB, name="Trần Thị Bình", ts=START + timedelta(minutes=5)),
        ],
        received_at=RECEIVED,
    )
    return store


def csv_rows(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))


def times_in(document: Any) -> list[str]:
    """Every string in a JSON document that looks like a time."""
    if isinstance(document, dict):
        return [t for value in document.values() for t in times_in(value)]
    if isinstance(document, list):
        return [t for value in document for t in times_in(value)]
    return [document] if isinstance(document, str) and document[:4] == "2026" else []


def test_the_entries_csv_and_json_give_site_times_with_the_offset(
    app: FastAPI, client: TestClient, stocked: Store
) -> None:
    headers = bearer(app, Role.VIEWER)
    csv_answer = client.get("/api/v1/entries/export?format=csv", headers=headers)
    json_answer = client.get("/api/v1/entries/export?format=json", headers=headers)

    first = csv_rows(csv_answer.content)[0]
    assert (first["ts"], first["received_at"]) == (LOCAL, "2026-03-02T10:00:05.250000+07:00")
    records = json.loads(json_answer.content)
    assert [r["ts"] for r in records] == [LOCAL, "2026-03-02T10:05:00+07:00"]
    assert all(t.endswith("+07:00") for t in times_in(records))
    # The file is named by the site's clock too.
    disposition = csv_answer.headers["content-disposition"]
    assert disposition == 'attachment; filename="gatescan-entries-20260302-100000.csv"'


def test_each_time_carries_its_own_offset_across_a_summer_time_change(store: Store) -> None:
    # Berlin moves from +01:00 to +02:00 on 29 March 2026 at 01:00 UTC.
    before, after = START.replace(day=28), START.replace(day=30)
    store.add_events(
        [cccd_event(1, subject=ALICE, ts=before), cccd_event(2, subject=BOB, ts=after)], before
    )
    app = create_web_app(store, WebSettings(site_timezone="Europe/Berlin"), hasher=FAST_HASHER)
    with TestClient(app) as client:
        answer = client.get("/api/v1/entries/export?format=csv", headers=bearer(app, Role.VIEWER))

    assert [row["ts"] for row in csv_rows(answer.content)] == [
        "2026-03-28T04:00:00+01:00",
        "2026-03-30T05:00:00+02:00",
    ]


def test_tracing_downloads_give_site_times_with_the_offset(
    app: FastAPI, client: TestClient, stocked: Store
) -> None:
    headers = bearer(app, Role.MANAGER)
    base = f"/api/v1/people/{ALICE}/trace/export?since=2026-03-01T00:00:00%2B07:00&format="
    rows = csv_rows(client.get(base + "csv", headers=headers).content)
    document = json.loads(client.get(base + "json", headers=headers).content)

    assert [(r["visit_ts"], r["contact_ts"]) for r in rows] == [
        (LOCAL, "2026-03-02T10:05:00+07:00")
    ]
    found = times_in(document)
    assert document["since"] == "2026-03-01T00:00:00+07:00"
    assert document["people"][0]["first_ts"] == "2026-03-02T10:05:00+07:00"
    assert len(found) == 5 and all(t.endswith("+07:00") for t in found), found


# --- the command line: UTC unless --timezone ---------------------------------------------------


def export(db: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "gatescan.cli", "entries", "export", "--db", db, *args],
        capture_output=True,
        timeout=60,
        env={**os.environ, "TZ": "Europe/Berlin"},  # not read: the export says which zone
    )


def test_the_cli_export_writes_utc_unless_given_a_time_zone(
    store: Store, store_url: Path | URL
) -> None:
    store.add_events([cccd_event(1, subject=ALICE)], received_at=RECEIVED)
    db = db_option(store_url)

    utc = export(db, "--format", "jsonl")
    local = export(db, "--format", "csv", "--timezone", "Asia/Ho_Chi_Minh")
    wrong = export(db, "--timezone", "Mars/Olympus_Mons")

    assert json.loads(utc.stdout)["ts"] == "2026-03-02T03:00:00Z"
    (row,) = csv_rows(local.stdout)
    assert (row["ts"], row["received_at"]) == (LOCAL, "2026-03-02T10:00:05.250000+07:00")
    assert wrong.returncode == 2
    assert b"unknown time zone 'Mars/Olympus_Mons'" in wrong.stderr
