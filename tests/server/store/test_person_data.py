"""A person's own data in a real SQLite file: what an export finds (entries, dead letters whose
kept payload names the ID, audit rows, passes, list entries), and an erasure that removes them in
one transaction, keeps a marker of the ID's SHA-256 only, and makes the store refuse to keep an
event naming the ID again (acked, not stored)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import server.store.person_data as person_data
from gatescan.testing.samples import sample_event
from protocol.messages import Event
from server.store.audit import AuditLog
from server.store.database import Store
from server.store.person_data import erase_person, find_person, subject_digest
from server.store.site_keys import PassRecord, PassRegistry
from server.store.site_policy import SiteLists, policy_versions
from server.store.tables import erased_subjects_table

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
CCCD = "001203004567"
OTHER = "079203001234"
PASS_ID = "3f2a9c0e1b7d4a55"
TOPIC = "gatescan/v1/devices/gate-01/events"


def make_event(event_id: str, subject_id: str = CCCD, **fields: Any) -> Event:
    defaults: dict[str, Any] = {
        "ts": NOW - timedelta(minutes=1),
        "subject_id": subject_id,
        "subject_name": "Nguyễn Thị Ánh Tuyết" if subject_id == CCCD else "Trần Văn Bình",
        "code_sha256": "ab" * 32,
        "code_length": 96,
    }
    return sample_event(event_id=event_id, **{**defaults, **fields})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "gatescan.db")
    store.add_events(
        [make_event("evt-00000001"), make_event("evt-00000002"), make_event("evt-0000000b", OTHER)],
        NOW,
    )
    # A refused event naming the person, one naming someone else whose digest holds the
    # person's digits inside a longer run (not them), and one naming no one.
    naming = make_event("evt-00000003").to_json().replace(b'"ts"', b'"extra": 1, "ts"')
    store.dead_letter(TOPIC, naming, "schema", "extra: not allowed", NOW, event_id="evt-00000003")
    inside = make_event("evt-0000000c", OTHER, code_sha256="9" + CCCD + "a" * 51).to_json()
    store.dead_letter(TOPIC, inside + b"x", "not_json", "not JSON", NOW)
    store.dead_letter(TOPIC, b"garbage", "not_json", "not JSON", NOW)
    lists = SiteLists(store.engine)
    lists.add("hq", "block", [f"cccd:{CCCD}", f"cccd:{OTHER}"], NOW)
    lists.add("depot", "allow", [f"cccd:{CCCD}"], NOW)
    AuditLog(store.engine).record("lan", "unmask", CCCD, {"entries": 2})
    AuditLog(store.engine).record("lan", "trace", OTHER, {})
    return store


def test_export_finds_entries_dead_letters_audit_and_lists_with_names_exact(store: Store) -> None:
    data = find_person(store.engine, f" {CCCD} ")

    assert [entry["event_id"] for entry in data.entries] == ["evt-00000001", "evt-00000002"]
    assert {entry["subject_name"] for entry in data.entries} == {"Nguyễn Thị Ánh Tuyết"}
    assert [letter["event_id"] for letter in data.dead_letters] == ["evt-00000003"]
    assert [row["action"] for row in data.audit] == ["unmask"]
    assert [(row["site_id"], row["kind"]) for row in data.lists] == [
        ("depot", "allow"),
        ("hq", "block"),
    ]
    assert data.passes == [] and data.erased_at is None
    document = data.to_json(NOW)
    assert "Nguyễn Thị Ánh Tuyết".encode() in document  # UTF-8, not \\u escapes
    parsed = json.loads(document)
    assert parsed["subject_id"] == CCCD
    assert parsed["dead_letters"][0]["payload"].startswith('{"event_id":"evt-00000003"')
    assert OTHER not in document.decode()


def test_export_of_a_pass_id_finds_its_pass(store: Store) -> None:
    PassRegistry(store.engine).add(
        PassRecord(PASS_ID, "Lê Thị Thu Hà", "hq", 1, NOW, NOW + timedelta(days=30), True, NOW)
    )
    store.add_events(
        [make_event("evt-0000000d", PASS_ID, credential_type="pass", subject_name="")], NOW
    )
    data = find_person(store.engine, PASS_ID.upper())
    assert [row["holder_name"] for row in data.passes] == ["Lê Thị Thu Hà"]
    assert [entry["event_id"] for entry in data.entries] == ["evt-0000000d"]


def test_an_id_of_neither_form_is_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        find_person(store.engine, "12345")
    with pytest.raises(ValueError):
        erase_person(store.engine, "x" * 16, NOW)


def test_erase_removes_entries_dead_letters_and_list_entries_and_keeps_only_a_digest(
    store: Store,
) -> None:
    before = policy_versions(store.engine)

    erasure = erase_person(store.engine, CCCD, NOW)

    assert (erasure.entries, erasure.dead_letters) == (2, 1)
    assert erasure.list_entries == (("depot", "allow"), ("hq", "block"))
    data = find_person(store.engine, CCCD)
    assert (data.entries, data.dead_letters, data.lists) == ([], [], [])
    assert data.erased_at == NOW
    # Everyone else's stays: their entry, their list entry, the other two dead letters.
    assert [e.event_id for e in store.entries()] == ["evt-0000000b"]
    assert SiteLists(store.engine).entries("hq", "block") == [(f"cccd:{OTHER}", NOW)]
    assert len(store.dead_letters()) == 2
    # Each site whose list changed gets a new policy version (its gates get the change).
    after = policy_versions(store.engine)
    assert {site: after[site] - before[site] for site in after} == {"depot": 1, "hq": 1}
    with store.engine.connect() as conn:
        markers = conn.execute(select(erased_subjects_table)).all()
    assert [tuple(row) for row in markers] == [(hashlib.sha256(CCCD.encode()).hexdigest(), NOW)]
    assert subject_digest(CCCD) == markers[0][0]

    again = erase_person(store.engine, CCCD, NOW + timedelta(hours=1))
    assert again.nothing and again.erased_before == NOW


def test_erase_is_one_transaction(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_args: object) -> int:
        raise RuntimeError("the disk went away")

    monkeypatch.setattr(person_data, "bump_version", fail)  # the last write of the erasure
    with pytest.raises(RuntimeError):
        erase_person(store.engine, CCCD, NOW)

    data = find_person(store.engine, CCCD)
    assert (len(data.entries), len(data.dead_letters), len(data.lists)) == (2, 1, 2)
    assert data.erased_at is None


def test_erasing_an_unknown_id_writes_nothing(store: Store) -> None:
    erasure = erase_person(store.engine, "012345678901", NOW)
    assert erasure.nothing and erasure.erased_before is None
    with store.engine.connect() as conn:
        assert conn.execute(select(erased_subjects_table)).all() == []


def test_an_erased_subjects_event_is_acked_but_not_stored_again(store: Store) -> None:
    erase_person(store.engine, CCCD, NOW)

    resent = [
        make_event("evt-00000001"),
        make_event("evt-00000009"),
        make_event("evt-0000000e", OTHER),
    ]
    result = store.add_events(resent, NOW + timedelta(minutes=1))

    assert result.ids == ("evt-00000001", "evt-00000009", "evt-0000000e")  # all may be acked
    assert result.new == ("evt-0000000e",)
    assert result.erased == ("evt-00000001", "evt-00000009")
    assert sorted(e.event_id for e in store.entries()) == ["evt-0000000b", "evt-0000000e"]
    assert find_person(store.engine, CCCD).entries == []
