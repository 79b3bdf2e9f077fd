"""Store on a real SQLite file: idempotent inserts, WAL, devices, dead letters, exact text."""

import sqlite3
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL

from gatescan.testing.samples import sample_event
from protocol.messages import Event, Status, Telemetry
from server.store.database import Store, status_update
from server.store.tables import DEAD_LETTER_PAYLOAD_BYTES, entries_table
from server.store.writes import (
    DeadLetterRecord,
    WriteBatch,
    _bind_processor,
    utc_datetime_text,
)

RECEIVED = datetime(2025, 3, 1, 1, 0, 5, tzinfo=UTC)
HANOI = timezone(timedelta(hours=7))
SQLITE = sqlite.dialect()


def make_event(event_id: str = "evt-00000001", **fields: Any) -> Event:
    defaults: dict[str, Any] = {
        "site_id": "Bệnh viện Bạch Mai",
        "ts": datetime(2025, 3, 1, 8, 0, 0, 123456, tzinfo=HANOI),
        "subject_id": "001203004567",
        "subject_name": "Nguyễn Thị Ánh Tuyết",
        "code_sha256": "ab" * 32,
        "code_length": 96,
    }
    return sample_event(event_id=event_id, **{**defaults, **fields})


def make_raw_event(event_id: str, **fields: Any) -> Event:
    digest = "cd" * 32
    raw = {
        "credential_type": "raw",
        "subject_id": digest,
        "subject_name": "",
        "code_sha256": digest,
    }
    return make_event(event_id, **{**raw, **fields})


def test_resent_event_is_stored_once_and_its_id_reported_each_time(store: Store) -> None:
    event = make_event()

    first = store.add_events([event], RECEIVED)
    second = store.add_events([event], RECEIVED + timedelta(seconds=30))

    assert first.ids == second.ids == ("evt-00000001",)
    assert first.new == ("evt-00000001",)
    assert second.new == ()
    assert second.duplicate_count == 1
    assert store.count_entries() == 1
    [stored] = store.entries()
    assert stored.received_at == RECEIVED  # the first arrival is kept, not overwritten


def test_batch_mixing_new_stored_and_repeated_events_stores_each_once(store: Store) -> None:
    store.add_events([make_event("evt-old-0001")], RECEIVED)
    batch = [make_event("evt-new-0001"), make_event("evt-old-0001"), make_event("evt-new-0001")]

    result = store.add_events(batch, RECEIVED)

    assert result.ids == ("evt-new-0001", "evt-old-0001")
    assert result.new == ("evt-new-0001",)
    assert result.duplicate_count == 2
    assert store.count_entries() == 2


def test_large_batch_is_stored_in_one_call(store: Store) -> None:
    events = [make_event(f"evt-{n:08d}", seq=n) for n in range(1200)]

    result = store.add_events(events, RECEIVED)
    again = store.add_events(events, RECEIVED)

    assert len(result.new) == 1200
    assert again.new == ()
    assert store.count_entries() == 1200


def test_sqlite_database_runs_in_wal_mode_with_full_sync(
    sqlite_store: Store, tmp_path: Path
) -> None:
    store = sqlite_store
    store.add_events([make_event()], RECEIVED)

    assert store.journal_mode() == "wal"
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    # The mode is in the file itself: an outside reader sees it too.
    with sqlite3.connect(tmp_path / "gatescan.db") as outside:
        assert outside.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_plain_file_path_opens_a_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"

    Store(path).add_events([make_event()], RECEIVED)

    assert Store(str(path)).count_entries() == 1
    assert path.exists()


def test_entries_survive_reopening_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gatescan.db'}"
    with Store(url) as first:
        first.add_events([make_event()], RECEIVED)

    with Store(url) as reopened:
        assert [entry.event for entry in reopened.entries()] == [make_event()]


def test_vietnamese_text_round_trips_exactly(store: Store) -> None:
    decomposed = unicodedata.normalize("NFD", "Trần Văn Đức")  # bytes differ from the NFC form
    card = make_event(subject_name=decomposed, site_id="Chợ Bến Thành")
    text = "Phiếu khách số 7\r\nPhòng 301, Tầng 3"  # a raw code's text keeps its line breaks
    raw = make_raw_event("evt-00000002", code_text=text)

    store.add_events([card, raw], RECEIVED)

    stored_card, stored_raw = store.entries()
    assert stored_card.subject_name == decomposed  # an entry reads like the Event it stores
    assert stored_card.event.subject_name.encode() == decomposed.encode()
    assert stored_card.event.site_id == "Chợ Bến Thành"
    assert stored_raw.event.code_text == text
    assert [stored_card.event, stored_raw.event] == [card, raw]


def test_times_come_back_as_the_same_instant_in_utc(store: Store) -> None:
    event = make_event(ts=datetime(2025, 3, 1, 8, 0, 0, 123456, tzinfo=HANOI))

    store.add_events([event], RECEIVED.astimezone(HANOI))

    [stored] = store.entries()
    assert stored.event.ts == datetime(2025, 3, 1, 1, 0, 0, 123456, tzinfo=UTC)
    assert stored.event.ts.utcoffset() == timedelta(0)
    assert stored.received_at == RECEIVED
    assert stored.received_at.tzinfo is not None


@pytest.mark.parametrize(
    "ts",
    [datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC)],
    ids=["last", "first"],
)
def test_times_at_the_ends_of_time_come_back_whatever_the_servers_zone(
    store: Store, ts: datetime
) -> None:
    # A gate's clock may say anything. PostgreSQL hands a timestamptz over in the session's time
    # zone (the test server's is +07:00, where 9999-12-31 23:59 UTC is in year 10000).
    store.add_events([make_event(ts=ts, clock_synced=False)], RECEIVED)

    [stored] = store.entries()
    assert stored.event.ts == ts
    [same] = store.device_events("gate-01")
    assert same.ts == ts


def test_naive_received_time_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        store.add_events([make_event()], datetime(2025, 3, 1, 8, 0))
    assert store.count_entries() == 0


def test_entries_come_oldest_first_and_filter_by_time_and_device(store: Store) -> None:
    base = datetime(2025, 3, 1, 1, 0, tzinfo=UTC)
    late = make_event("evt-late-001", ts=base + timedelta(hours=2))
    early = make_event("evt-early-01", ts=base)
    other = make_event("evt-other-01", ts=base + timedelta(hours=1), device_id="gate-02")
    store.add_events([late, early, other], RECEIVED)

    def ids(**query: Any) -> list[str]:
        return [entry.event.event_id for entry in store.entries(**query)]

    assert ids() == ["evt-early-01", "evt-other-01", "evt-late-001"]
    assert ids(since=base + timedelta(hours=1)) == ["evt-other-01", "evt-late-001"]
    assert ids(until=base + timedelta(hours=1)) == ["evt-early-01"]
    assert ids(device_id="gate-01") == ["evt-early-01", "evt-late-001"]


def test_dead_letter_keeps_reason_detail_and_a_bounded_payload(store: Store) -> None:
    payload = b"{" * (DEAD_LETTER_PAYLOAD_BYTES + 10)

    store.dead_letter("gatescan/v1/devices/gate-01/events", payload, "too_large", "big", RECEIVED)
    store.dead_letter("gatescan/v1/devices/gate-01/events", b"\xff", "not_json", "bad", RECEIVED)

    assert store.dead_letter_count() == 2
    newest, oldest = store.dead_letters()
    assert (newest.reason, newest.payload, newest.payload_size) == ("not_json", b"\xff", 1)
    assert oldest.reason == "too_large"
    assert oldest.payload_size == DEAD_LETTER_PAYLOAD_BYTES + 10
    assert len(oldest.payload) == DEAD_LETTER_PAYLOAD_BYTES
    assert oldest.topic == "gatescan/v1/devices/gate-01/events"


def test_status_and_telemetry_update_one_row_per_device(store: Store) -> None:
    online = Status(state="online", ts=RECEIVED, version="1.2.0", boot_id="boot-7", faults=[])
    telemetry = Telemetry(
        ts=RECEIVED,
        uptime_s=12.5,
        fps=14.0,
        decode_ms=6.5,
        outbox_depth=3,
        clock_synced=True,
        version="1.2.0",
    )
    offline = Status(state="offline", faults=["camera"])
    later = RECEIVED + timedelta(minutes=1)

    store.record_status("gate-01", online, RECEIVED)
    store.record_telemetry("gate-01", telemetry, RECEIVED)
    store.record_status("gate-01", offline, later)

    [device] = store.devices()
    assert device.device_id == "gate-01"
    assert device.state == "offline"
    assert device.faults == ["camera"]
    assert device.status_received_at == later
    assert device.telemetry is not None
    assert device.telemetry["outbox_depth"] == 3
    assert device.telemetry_at == RECEIVED
    assert device.last_seen == RECEIVED  # an offline will is the broker speaking, not the gate


def test_telemetry_alone_creates_the_device(store: Store) -> None:
    telemetry = Telemetry(
        ts=RECEIVED,
        uptime_s=1,
        fps=10,
        decode_ms=5,
        outbox_depth=0,
        clock_synced=False,
        version="1.0",
    )

    store.record_telemetry("gate-09", telemetry, RECEIVED)

    [device] = store.devices()
    assert (device.device_id, device.state, device.faults) == ("gate-09", None, [])
    assert device.last_seen == RECEIVED


def test_dead_letter_keeps_only_the_head_the_caller_asks_for(store: Store) -> None:
    payload = b"x" * 100_000

    store.dead_letter("t", payload, "too_large", "big", RECEIVED, keep_bytes=4096)

    [letter] = store.dead_letters()
    assert (len(letter.payload), letter.payload_size) == (4096, 100_000)


def test_dead_letters_are_counted_by_reason(store: Store) -> None:
    for reason in ["schema", "not_json", "schema", "too_large", "schema"]:
        store.dead_letter("t", b"{}", reason, "why", RECEIVED)

    assert store.dead_letter_counts() == {"not_json": 1, "schema": 3, "too_large": 1}


def test_an_empty_store_counts_no_dead_letters(store: Store) -> None:
    assert store.dead_letter_counts() == {}


def test_a_failure_before_the_commit_stores_none_of_the_batch(store: Store) -> None:
    class KilledHere(Exception):
        pass

    def die() -> None:
        raise KilledHere

    with pytest.raises(KilledHere):
        store.add_events([make_event("evt-00000001")], RECEIVED, before_commit=die)

    assert store.count_entries() == 0  # the insert was rolled back
    assert store.add_events([make_event("evt-00000001")], RECEIVED).new == ("evt-00000001",)


def test_device_events_follow_seq_when_the_clock_runs_backwards(store: Store) -> None:
    # An unsynchronised clock that jumped back: ts falls while seq rises.
    start = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    events = [
        make_event(
            f"evt-seq{seq:05d}", seq=seq, ts=start - timedelta(minutes=seq), clock_synced=False
        )
        for seq in range(1, 6)
    ]
    store.add_events(list(reversed(events)), RECEIVED)

    by_device = [entry.event for entry in store.device_events("gate-01")]
    by_clock = [entry.event for entry in store.entries(device_id="gate-01")]

    assert [e.seq for e in by_device] == [1, 2, 3, 4, 5]
    assert by_device == events
    assert [e.seq for e in by_clock] == [5, 4, 3, 2, 1]  # what trusting ts would have said


def test_device_events_order_boots_by_first_arrival_even_when_seq_restarts(store: Store) -> None:
    # Boot "zzz" came first; then the journal was lost (new SD card) and seq restarted in boot
    # "aaa", whose id sorts first and whose seqs are lower: arrival decides, not id or seq.
    ts = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    old_boot = [make_event(f"evt-old{s:05d}", seq=s, boot_id="zzz", ts=ts) for s in (40, 41)]
    new_boot = [make_event(f"evt-new{s:05d}", seq=s, boot_id="aaa", ts=ts) for s in (1, 2)]
    other_gate = make_event("evt-other001", device_id="gate-02", seq=3, boot_id="aaa", ts=ts)
    store.add_events([old_boot[1], other_gate], RECEIVED)
    store.add_events([new_boot[1], new_boot[0]], RECEIVED + timedelta(seconds=5))
    store.add_events([old_boot[0]], RECEIVED + timedelta(seconds=9))  # a late resend

    order = [(e.boot_id, e.seq) for e in store.device_events("gate-01")]

    assert order == [("zzz", 40), ("zzz", 41), ("aaa", 1), ("aaa", 2)]
    assert [e.event_id for e in store.device_events("gate-02")] == ["evt-other001"]


def test_received_at_is_the_collectors_clock_not_the_gates(store: Store) -> None:
    wrong_clock = datetime(2001, 1, 1, tzinfo=UTC)  # a Pi that booted without NTP
    store.add_events([make_event(ts=wrong_clock, clock_synced=False)], RECEIVED)

    [stored] = store.device_events("gate-01")
    assert (stored.ts, stored.received_at) == (wrong_clock, RECEIVED)


def test_a_database_from_before_code_text_withheld_gains_the_column(store_url: Path | URL) -> None:
    with Store(store_url) as current:
        current.add_events([make_event("evt-00000001")], RECEIVED)
        with current.engine.begin() as old:  # as the table first shipped
            old.execute(text("ALTER TABLE entries DROP COLUMN code_text_withheld"))
            old.execute(text("DROP TABLE alembic_version"))  # made before migrations

    with Store(store_url) as upgraded:
        upgraded.add_events([make_event("evt-00000002")], RECEIVED)
        stored = [entry.event for entry in upgraded.entries()]

    assert [e.event_id for e in stored] == ["evt-00000001", "evt-00000002"]
    assert [e.code_text_withheld for e in stored] == [False, False]


EVENTS_TOPIC = "gatescan/v1/devices/gate-01/events"


def test_the_same_refused_message_again_counts_a_repeat_and_adds_no_row(store: Store) -> None:
    later = RECEIVED + timedelta(seconds=10)

    assert store.dead_letter(EVENTS_TOPIC, b'{"seq": "one"}', "schema", "seq", RECEIVED) is True
    for _ in range(3):  # the gate's resends
        assert store.dead_letter(EVENTS_TOPIC, b'{"seq": "one"}', "schema", "seq", later) is False

    [letter] = store.dead_letters()
    assert (letter.repeats, letter.received_at, letter.last_received_at) == (3, RECEIVED, later)
    assert store.dead_letter_count() == 4  # messages refused, repeats included
    assert store.dead_letter_counts() == {"schema": 4}


def test_another_payload_topic_or_reason_is_a_dead_letter_of_its_own(store: Store) -> None:
    store.dead_letter(EVENTS_TOPIC, b"{}", "schema", "why", RECEIVED)
    store.dead_letter(EVENTS_TOPIC, b"{ }", "schema", "why", RECEIVED)
    store.dead_letter("gatescan/v1/devices/gate-02/events", b"{}", "schema", "why", RECEIVED)
    store.dead_letter(EVENTS_TOPIC, b"{}", "error", "commit failed", RECEIVED)

    assert [letter.repeats for letter in store.dead_letters()] == [0, 0, 0, 0]


def test_a_database_from_before_dead_letter_repeats_gains_the_columns(
    store_url: Path | URL,
) -> None:
    with Store(store_url) as current:
        current.dead_letter(EVENTS_TOPIC, b"{", "not_json", "old", RECEIVED)
        with current.engine.begin() as old:
            old.execute(text("DROP TABLE alembic_version"))  # made before migrations
            old.execute(text("DROP INDEX ix_dead_letters_payload_sha256"))
            for column in ("payload_sha256", "repeats", "last_received_at"):  # as it shipped
                old.execute(text(f"ALTER TABLE dead_letters DROP COLUMN {column}"))

    with Store(store_url) as upgraded:
        upgraded.dead_letter(EVENTS_TOPIC, b"{", "not_json", "new", RECEIVED)  # no digest before
        upgraded.dead_letter(EVENTS_TOPIC, b"{", "not_json", "new", RECEIVED)
        letters = upgraded.dead_letters()
        indexes = {i["name"] for i in inspect(upgraded.engine).get_indexes("dead_letters")}

    assert [(d.detail, d.repeats, d.payload_sha256 is None) for d in letters] == [
        ("new", 1, False),
        ("old", 0, True),
    ]
    assert "ix_dead_letters_payload_sha256" in indexes


# --- batches: what the collector commits at once -------------------------------------------------


def test_batch_rows_are_stored_exactly_as_sqlalchemy_core_stores_them(tmp_path: Path) -> None:
    events = [
        make_event("evt-00000001"),
        make_raw_event("evt-00000002", code_text="Phòng 301\r\n", code_text_withheld=False),
        make_raw_event("evt-00000003", code_text=None, code_text_withheld=True),
    ]
    batched = Store(tmp_path / "batched.db")
    batched.add_events(events, RECEIVED)
    core = Store(tmp_path / "core.db")
    with core.engine.begin() as conn:  # SQLAlchemy Core's own conversion of every value
        conn.execute(
            insert(entries_table),
            [{**e.model_dump(mode="json"), "ts": e.ts, "received_at": RECEIVED} for e in events],
        )

    def raw_rows(path: Path) -> list[tuple[Any, ...]]:
        with sqlite3.connect(path) as conn:
            return conn.execute("SELECT * FROM entries ORDER BY event_id").fetchall()

    assert raw_rows(tmp_path / "batched.db") == raw_rows(tmp_path / "core.db")
    assert [entry.event for entry in batched.entries()] == events


def test_one_batch_commits_entries_dead_letters_and_devices_together(store: Store) -> None:
    topic = "gatescan/v1/devices/gate-01/events"
    status = Status(state="online", ts=RECEIVED, version="1.0", boot_id="b", faults=[])
    batch = WriteBatch(
        entries=[store.entry_row(make_event(f"evt-{n:08d}", seq=n)) for n in range(3)],
        dead_letters=[
            DeadLetterRecord(topic, b"{", "not_json", "cut short"),
            DeadLetterRecord(topic, b"{", "not_json", "cut short"),  # a resend in the batch
        ],
        devices=[status_update("gate-01", status, RECEIVED)],
    )

    result = store.write_batch(batch, RECEIVED)

    assert result.events.new == ("evt-00000000", "evt-00000001", "evt-00000002")
    assert result.dead_letters_added == (True, False)  # the second only counts a repeat
    assert store.count_entries() == 3
    assert [(d.reason, d.repeats) for d in store.dead_letters()] == [("not_json", 1)]
    assert [d.state for d in store.devices()] == ["online"]


def test_a_batch_that_fails_before_its_commit_leaves_nothing_behind(store: Store) -> None:
    class KilledHere(Exception):
        pass

    def die() -> None:
        raise KilledHere

    status = Status(state="online", ts=RECEIVED, version="1.0", boot_id="b", faults=[])
    batch = WriteBatch(
        entries=[store.entry_row(make_event())],
        dead_letters=[DeadLetterRecord("t", b"[]", "not_object", "a list")],
        devices=[status_update("gate-01", status, RECEIVED)],
    )

    with pytest.raises(KilledHere):
        store.write_batch(batch, RECEIVED, before_commit=die)

    assert (store.count_entries(), store.dead_letter_count(), store.devices()) == (0, 0, [])


def test_a_batch_larger_than_one_insert_statement_is_stored_whole(store: Store) -> None:
    # 500 rows per INSERT at most: 1,234 rows take three statements in the one transaction.
    events = [make_event(f"evt-{n:08d}", seq=n) for n in range(1234)]
    resent = [make_event(f"evt-{n:08d}", seq=n) for n in range(0, 1234, 7)]

    first = store.add_events(events, RECEIVED)
    second = store.add_events([*resent, make_event("evt-new00001")], RECEIVED)

    assert (len(first.new), first.duplicate_count) == (1234, 0)
    assert (second.new, second.duplicate_count) == (("evt-new00001",), len(resent))
    assert store.count_entries() == 1235


@given(
    st.datetimes(
        timezones=st.sampled_from(
            [UTC, HANOI, timezone(timedelta(hours=-9, minutes=-30)), timezone(timedelta(0))]
        )
    )
)
def test_event_times_are_written_as_sqlalchemy_writes_them(value: datetime) -> None:
    # The collector's one-step conversion of `ts` is SQLAlchemy's UtcDateTime on SQLite, exactly.
    sqlalchemy_own = entries_table.c.ts.type.dialect_impl(SQLITE).bind_processor(SQLITE)
    assert sqlalchemy_own is not None
    assert utc_datetime_text(value) == sqlalchemy_own(value)


def test_the_one_step_time_conversion_is_used_only_where_proven_equal() -> None:
    assert _bind_processor("ts", SQLITE) is utc_datetime_text
    assert _bind_processor("ts", postgresql.dialect()) is not utc_datetime_text
    with pytest.raises(ValueError, match="naive"):
        utc_datetime_text(datetime(2025, 3, 1, 8, 0))
