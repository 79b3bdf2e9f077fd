"""`gatescan person export|erase --phone N --site S` on SQLite and PostgreSQL (issue 18): a
person who checked in at a poster with a phone only is found by the subject the page made of
their phone (its normaliser, its keyed hash under the site's secret), exported, and erased as a
CCCD's entries are: one transaction, a marker, the same check-in not stored again."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import URL

from gatescan.testing.samples import sample_event
from protocol.verdicts import Direction
from server.checkin.declaration import read_declaration
from server.checkin.recording import checkin_event, record
from server.locations.records import Locations
from server.store.audit import AuditLog
from server.store.database import Store
from server.store.person_data import subject_digest
from server.store.site_policy import rotation_secret
from tests.support.cli import run_gatescan_here
from tests.support.web import BACKENDS, both_backends, db_option

NOW = datetime.now(UTC)
NAME = "Lê Văn Tám"
PHONE = "0901234567"


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Path | URL:
    return both_backends(request, tmp_path)


def checked_in(store: Store, phone: str, site: str, minutes_ago: int) -> str:
    """A phone-only self check-in, stored as the page stores it; its subject id."""
    place = Locations(store.engine).add("Sạp 3", site_id=site, direction=Direction.IN, now=NOW)
    form = {"name": NAME, "phone": phone, "health_symptoms": "no", "health_contact": "no"}
    reading = read_declaration({**form, "health_travel": "no"}, Direction.IN)
    assert reading.declaration is not None
    when = NOW - timedelta(minutes=minutes_ago)
    event = checkin_event(
        reading.declaration, place, when, rotation_secret(store.engine, site, NOW)
    )
    record(store, event, when)
    return event.subject_id


def gatescan(url: Path | URL, *args: str) -> tuple[int, str, str]:
    done = run_gatescan_here([*args, "--db", db_option(url)])
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def test_a_phone_only_check_in_is_exported_and_erased(store_url: Path | URL) -> None:
    with Store(store_url) as store:
        subject = checked_in(store, PHONE, "hq", 5)
        assert checked_in(store, "+84 90 123 4567", "hq", 3) == subject, "one person"
        elsewhere = checked_in(store, PHONE, "branch", 4)
        assert elsewhere != subject, "another site's secret: another subject"
        store.add_events([sample_event(event_id="evt-gate0001", subject_id="001203004567")], NOW)

    code, out, err = gatescan(
        store_url, "person", "export", "--phone", "090.123.4567", "--site", "hq"
    )
    assert code == 0, err
    document = json.loads(out)
    assert [e["subject_id"] for e in document["entries"]] == [subject, subject]
    assert {e["subject_name"] for e in document["entries"]} == {NAME}

    code, out, err = gatescan(
        store_url, "person", "erase", "--phone", PHONE, "--site", "hq", "--yes"
    )
    assert code == 0, err
    assert "erased: 2 entries" in out
    with Store(store_url) as store:
        kept = {entry.subject_id for entry in store.entries()}
        assert kept == {elsewhere, "001203004567"}
        rows = AuditLog(store.engine).rows(action="person")
        assert {(r.subject, r.details["change"]) for r in rows} == {
            (subject, "person export"),
            (f"sha256:{subject_digest(subject)}", "person erase"),
        }
        assert PHONE not in str(rows) and "901234567" not in str(rows)
        checked_in(store, PHONE, "hq", 1)  # the page again: acked, not stored
        assert {entry.subject_id for entry in store.entries()} == kept

    code, _, err = gatescan(store_url, "person", "erase", "--phone", PHONE, "--site", "hq", "--yes")
    assert code == 3 and "nothing kept" in err


def test_phone_mistakes_are_refused_before_anything_is_read(store_url: Path | URL) -> None:
    with Store(store_url):
        pass
    for args, words in (
        (["--phone", "12345", "--site", "hq"], "not a Vietnamese phone number"),
        (["--phone", PHONE], "--phone and --site go together"),
        (["001203004567", "--phone", PHONE, "--site", "hq"], "not both"),
        ([], "give an ID"),
    ):
        code, _, err = gatescan(store_url, "person", "export", *args)
        assert code == 2 and words in err, (args, err)
    code, _, err = gatescan(store_url, "person", "export", "--phone", PHONE, "--site", "nowhere")
    assert code == 3 and "no self check-ins" in err
