"""What the store keeps of a refused message (a digest, the size and the first 4 KiB, never the
whole payload, in old databases too), and how it tells a resend from a conflicting event."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.engine import URL

from gatescan.testing.samples import sample_event
from protocol.messages import Event
from server.store.database import Store
from server.store.tables import DEAD_LETTER_PAYLOAD_BYTES, dead_letters_table
from server.store.writes import Conflict, DeadLetterRecord, WriteBatch

RECEIVED = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
TOPIC = "gatescan/v1/devices/gate-01/events"


def make_event(event_id: str = "evt-00000001", **fields: Any) -> Event:
    defaults: dict[str, Any] = {
        "device_id": "gate-01",
        "ts": datetime(2026, 3, 2, 2, 59, tzinfo=UTC),
        "subject_id": "001203004567",
        "subject_name": "Nguyễn Thị Ánh Tuyết",
        "code_sha256": "ab" * 32,
        "code_length": 96,
    }
    return sample_event(event_id=event_id, **{**defaults, **fields})


def sixty_kb_refusal(n: int) -> bytes:
    """A gate's event with a 60 KB code_text: refused (schema), full of personal data."""
    event = make_event(f"evt-flood{n:04d}").to_json()
    return event[:-1] + b',"code_text":"' + b"Nguyen Van An 079190000001 " * 2300 + b'"}'


def test_a_refused_payload_is_kept_as_its_digest_size_and_first_4_kib_whatever_the_reason(
    store: Store,
) -> None:
    payload = sixty_kb_refusal(1)
    assert len(payload) > 60_000

    store.dead_letter(TOPIC, payload, "schema", "code_text: too long", RECEIVED)

    [letter] = store.dead_letters()
    assert letter.payload == payload[:DEAD_LETTER_PAYLOAD_BYTES] == payload[:4096]
    assert letter.payload_size == len(payload)
    assert letter.payload_sha256 == hashlib.sha256(payload).hexdigest()
    with store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT max(length(payload)) FROM dead_letters").scalar()
    assert stored == 4096


def test_a_caller_cannot_keep_more_than_4_kib(store: Store) -> None:
    record = DeadLetterRecord(TOPIC, b"x" * 65_536, "schema", "why", keep_bytes=65_536)

    store.write_batch(WriteBatch(dead_letters=[record]), RECEIVED)

    assert len(store.dead_letters()[0].payload) == 4096


def test_whole_payloads_in_a_database_from_before_are_cut_to_4_kib_when_it_is_opened(
    store_url: Path | URL,
) -> None:
    whole = sixty_kb_refusal(2)
    columns = ("received_at", "topic", "reason", "detail", "payload", "payload_size",
               "payload_sha256", "repeats")  # fmt: skip
    at = datetime(2026, 3, 1, tzinfo=UTC)
    rows = [
        (at, TOPIC, "schema", "no digest", whole, len(whole), None, 0),
        (at, TOPIC, "schema", "digest", whole + b" ", len(whole) + 1,
         hashlib.sha256(whole + b" ").hexdigest(), 2),
        (at, TOPIC, "not_json", "short", b"{", 1, None, 0),
    ]  # fmt: skip
    with Store(store_url) as older, older.engine.begin() as old:
        old.execute(text("DROP TABLE alembic_version"))  # made before migrations
        old.execute(text("ALTER TABLE dead_letters DROP COLUMN event_id"))  # as it shipped
        old.execute(
            insert(dead_letters_table), [dict(zip(columns, row, strict=True)) for row in rows]
        )

    with Store(store_url) as upgraded:
        letters = {letter.detail: letter for letter in upgraded.dead_letters()}
        # A resend of the same refused message still counts as a repeat of its (trimmed) row.
        assert not upgraded.dead_letter(TOPIC, whole, "schema", "resent", RECEIVED)

    assert {detail: len(letter.payload) for detail, letter in letters.items()} == {
        "no digest": 4096,
        "digest": 4096,
        "short": 1,
    }
    assert letters["no digest"].payload == whole[:4096]
    assert letters["no digest"].payload_size == len(whole)
    assert letters["no digest"].payload_sha256 == hashlib.sha256(whole).hexdigest()
    assert letters["digest"].payload_sha256 == hashlib.sha256(whole + b" ").hexdigest()
    assert letters["short"].payload_sha256 is None  # not touched: nothing to cut
    assert letters["short"].event_id is None  # the new column, on an old row


def test_an_identical_resend_is_a_duplicate_and_other_content_a_conflict(store: Store) -> None:
    first = make_event()
    store.add_events([first], RECEIVED)
    changed = make_event(subject_name="Trần Văn Bình", subject_id="001203009999")

    stored = store.add_events([first, changed], RECEIVED)

    assert stored.new == ()
    assert stored.duplicate_count == 1
    assert stored.conflicts == (
        Conflict(1, first.event_id, ("subject_id", "subject_name")),
    )  # names of the fields only, never their values
    assert [entry.event for entry in store.entries()] == [first]  # the stored one stands


def test_a_conflict_within_one_batch_keeps_the_first_content(store: Store) -> None:
    first = make_event()
    later = make_event(seq=first.seq + 1)

    stored = store.add_events([first, first, later], RECEIVED)

    assert stored.new == (first.event_id,)
    assert (stored.duplicate_count, [c.position for c in stored.conflicts]) == (1, [2])
    assert stored.conflicts[0].fields == ("seq",)
    assert [entry.event for entry in store.entries()] == [first]


def test_a_conflicts_dead_letter_is_written_in_the_same_transaction(store: Store) -> None:
    first = make_event()
    store.add_events([first], RECEIVED)
    changed = make_event(ts=datetime(2026, 3, 2, 2, 58, tzinfo=UTC))
    payload = changed.to_json()

    def letter(conflict: Conflict) -> DeadLetterRecord:
        return DeadLetterRecord(
            TOPIC, payload, "conflict", conflict.detail, event_id=conflict.event_id
        )

    batch = WriteBatch(entries=[store.entry_row(changed)], conflict_letter=letter)
    result = store.write_batch(batch, RECEIVED)

    assert result.dead_letters_added == (True,)
    [dead] = store.dead_letters()
    assert (dead.reason, dead.event_id, dead.payload) == ("conflict", first.event_id, payload)
    assert dead.detail == "event_id stored before with other content: differs in ts"


def test_a_resend_written_differently_is_the_same_event_not_a_conflict(store: Store) -> None:
    first = make_event()
    store.add_events([first], RECEIVED)
    hanoi = first.ts.astimezone(timezone(timedelta(hours=7)))  # the same instant, another offset
    rewritten = Event.model_validate_json(
        b'{"future_field": 1, ' + make_event(ts=hanoi).to_json()[1:]
    )

    stored = store.add_events([rewritten], RECEIVED)

    assert (stored.duplicate_count, stored.conflicts) == (1, ())
