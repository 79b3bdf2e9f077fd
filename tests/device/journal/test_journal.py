"""The journal on real files: outbox, seq, wire bytes, daily history segments, acks, threads,
full disk, damaged files, retention. The only fakes are the disk's write call (FlakyDisk), to
simulate ENOSPC, and a clock set by the test (to date the purge). The storage on its own is tested
in test_storage.py, rejected events in test_journal_rejected.py."""

import errno
import logging
import threading
import zlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from device.journal.journal import Journal, JournalError
from device.journal.line_format import Tables, encode_line, replay
from protocol.messages import Event, parse_message
from protocol.topics import Topic
from tests.support.journal_disk import (
    NOON,
    FlakyDisk,
    SetClock,
    event_ids,
    make_draft,
    record_for_seq,
    record_one,
)

DAY = date(2026, 11, 26)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path) as opened:
        yield opened


def _reopen(journal: Journal, data_dir: Path, history_max_entries: int = 2000) -> Journal:
    journal.close()
    return Journal(data_dir, history_max_entries=history_max_entries)


def _pending_events(journal: Journal) -> list[Event]:
    return [entry.event() for entry in journal.pending()]


def _history_files(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "journal" / "history").iterdir())


def _stored(path: Path) -> Tables:
    """What a log file holds, read without the storage (no repairs, no side effects)."""
    return replay(path.read_bytes()).state


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _set_aside(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.corrupt-*"))


# --- outbox, acks, seq -------------------------------------------------------------------------


def test_event_leaves_outbox_only_after_ack(journal: Journal) -> None:
    event_id = record_one(journal)
    assert event_ids(journal.pending()) == [event_id]
    assert journal.outbox_depth() == 1
    assert journal.acknowledge([event_id]) == 1
    assert journal.pending() == []
    assert journal.outbox_depth() == 0


def test_recorded_event_reads_back_equal(journal: Journal) -> None:
    draft = make_draft(ts=NOON)
    event = journal.record(draft)
    assert event == draft.numbered(1)
    assert _pending_events(journal) == [event]
    assert journal.history(DAY) == [event]
    assert _pending_events(journal)[0].subject_name == "Nguyễn Văn An"


def test_pending_entries_carry_the_bytes_a_collector_parses(journal: Journal) -> None:
    events = [journal.record(make_draft(ts=NOON)) for _ in range(3)]
    entries = journal.pending()
    assert [(entry.event_id, entry.seq) for entry in entries] == [
        (e.event_id, e.seq) for e in events
    ]
    assert [parse_message(Topic.EVENTS, entry.wire) for entry in entries] == events
    assert [entry.wire for entry in entries] == [event.to_json() for event in events]


def test_wire_bytes_survive_reopen(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    hanoi_morning = datetime(2026, 11, 26, 6, 30, tzinfo=timezone(timedelta(hours=7)))
    journal.record(make_draft(ts=hanoi_morning))
    journal.record(make_draft(ts=NOON))
    before = journal.pending()
    journal = _reopen(journal, tmp_path)
    assert journal.pending() == before  # the very bytes, made again from the file
    journal.close()


def test_pending_is_lowest_seq_first_and_honours_limit(journal: Journal) -> None:
    ids = [record_one(journal) for _ in range(5)]
    assert event_ids(journal.pending()) == ids
    assert event_ids(journal.pending(limit=2)) == ids[:2]
    assert journal.pending(limit=0) == []
    journal.acknowledge([ids[0], ids[3]])
    assert event_ids(journal.pending()) == [ids[1], ids[2], ids[4]]


def test_unknown_ack_ids_are_ignored(journal: Journal) -> None:
    kept, acked = record_one(journal), record_one(journal)
    assert journal.acknowledge(["ev-never-recorded", acked, acked]) == 1
    assert journal.acknowledge([acked]) == 0
    assert journal.acknowledge([]) == 0
    assert event_ids(journal.pending()) == [kept]


def test_acknowledge_refuses_a_bare_string(journal: Journal) -> None:
    record_one(journal)
    with pytest.raises(TypeError):
        journal.acknowledge("ev-0123456789")


def test_record_gives_consecutive_seqs_from_one_that_go_on_after_reopen(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    assert [journal.record(make_draft()).seq for _ in range(3)] == [1, 2, 3]
    journal = _reopen(journal, tmp_path)
    assert [journal.record(make_draft()).seq for _ in range(2)] == [4, 5]
    assert [entry.seq for entry in journal.pending()] == [1, 2, 3, 4, 5]
    journal.close()


def test_seq_survives_reopen_after_every_event_is_acknowledged(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.acknowledge([record_one(journal), record_one(journal)])
    journal = _reopen(journal, tmp_path)
    assert journal.outbox_depth() == 0
    assert record_for_seq(journal) == 3
    journal.close()


def test_recording_a_draft_already_pending_returns_the_journaled_event(
    tmp_path: Path, journal: Journal
) -> None:
    # A write reported as failed may have landed: the recorder then offers the same draft again.
    draft = make_draft(ts=NOON)
    first = journal.record(draft)
    outbox_before = (tmp_path / "journal" / "outbox.log").read_bytes()
    assert journal.record(draft) == first
    assert (tmp_path / "journal" / "outbox.log").read_bytes() == outbox_before
    assert (journal.outbox_depth(), journal.history(DAY)) == (1, [first])
    assert record_for_seq(journal) == 2  # the repeat used up no seq


def test_outbox_file_holds_only_unacknowledged_events(tmp_path: Path, journal: Journal) -> None:
    ids = [record_one(journal) for _ in range(10)]
    journal.acknowledge(ids[:9])
    stored = _stored(tmp_path / "journal" / "outbox.log")
    assert [doc["event_id"] for doc in stored["events"].values()] == ids[9:]
    assert stored["meta"] == {"1": {"last_seq": 10}}


def test_each_record_appends_one_line_to_the_outbox_and_one_to_the_history(
    tmp_path: Path, journal: Journal
) -> None:
    outbox = tmp_path / "journal" / "outbox.log"
    segment = tmp_path / "journal" / "history" / "2026-11-26.0001.log"
    record_one(journal)
    before = (_lines(outbox), _lines(segment))
    event_id = record_one(journal)
    assert _lines(outbox)[:-1] == before[0] and _lines(segment)[:-1] == before[1]
    assert event_id.encode() in _lines(outbox)[-1] and b'"last_seq":2' in _lines(outbox)[-1]
    journal.acknowledge([event_id])
    assert _lines(outbox)[-1].endswith(b' {"events":{"2":null}}\n')


def test_outbox_log_is_compacted_as_events_are_acknowledged(
    tmp_path: Path, journal: Journal
) -> None:
    for _ in range(400):  # 3 entries per event (event, counter, ack): over 1,000 entries
        journal.acknowledge([record_one(journal)])
    kept = record_one(journal)
    outbox = tmp_path / "journal" / "outbox.log"
    assert len(_lines(outbox)) < 400  # far fewer than the 801 writes: it was rewritten
    journal = _reopen(journal, tmp_path)
    assert event_ids(journal.pending()) == [kept]
    assert record_for_seq(journal) == 402
    journal.close()


def test_closed_journal_refuses_use(journal: Journal) -> None:
    journal.close()
    journal.close()  # closing twice is harmless
    with pytest.raises(ValueError, match="closed"):
        journal.record(make_draft())


def test_second_opener_of_the_same_journal_is_refused(tmp_path: Path) -> None:
    first = Journal(tmp_path)
    with pytest.raises(JournalError, match="another process"):
        Journal(tmp_path)
    first.close()
    Journal(tmp_path).close()


# --- history -----------------------------------------------------------------------------------


def test_history_is_split_per_utc_day(tmp_path: Path, journal: Journal) -> None:
    late = datetime(2026, 11, 25, 23, 59, 59, tzinfo=UTC)
    # 06:30 in Hanoi (UTC+7) is still the previous day in UTC.
    hanoi_morning = datetime(2026, 11, 26, 6, 30, tzinfo=timezone(timedelta(hours=7)))
    before = [record_one(journal, late), record_one(journal, hanoi_morning)]
    after = [record_one(journal, NOON)]
    assert event_ids(journal.history(DAY - timedelta(days=1))) == before
    assert event_ids(journal.history(DAY)) == after
    assert journal.history(DAY + timedelta(days=1)) == []
    assert _history_files(tmp_path) == ["2026-11-25.0001.log", "2026-11-26.0001.log"]


def test_history_rolls_over_to_a_new_segment_when_full(tmp_path: Path) -> None:
    journal = Journal(tmp_path, history_max_entries=3)
    ids = [record_one(journal) for _ in range(7)]
    assert _history_files(tmp_path) == [f"2026-11-26.000{n}.log" for n in (1, 2, 3)]
    journal = _reopen(journal, tmp_path, history_max_entries=3)
    ids += [record_one(journal) for _ in range(3)]  # fills segment 3, then starts segment 4
    assert _history_files(tmp_path)[-1] == "2026-11-26.0004.log"
    assert event_ids(journal.history(DAY)) == ids
    segment = _stored(tmp_path / "journal" / "history" / "2026-11-26.0003.log")
    assert len(segment["events"]) == 3
    journal.close()


def test_history_keeps_acknowledged_events(journal: Journal) -> None:
    ids = [record_one(journal) for _ in range(3)]
    journal.acknowledge(ids)
    assert event_ids(journal.history(DAY)) == ids


# --- threads -----------------------------------------------------------------------------------


def test_acking_while_recording_loses_nothing(tmp_path: Path, journal: Journal) -> None:
    recorded: list[str] = []
    acked: list[int] = []
    recording_done = threading.Event()

    def record_many() -> None:
        for _ in range(300):
            recorded.append(record_one(journal))
        recording_done.set()

    def ack_what_is_pending() -> None:
        while not (recording_done.is_set() and journal.outbox_depth() == 0):
            acked.append(journal.acknowledge(event_ids(journal.pending(limit=7))))

    threads = [threading.Thread(target=record_many), threading.Thread(target=ack_what_is_pending)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(acked) == 300
    journal = _reopen(journal, tmp_path)
    assert journal.outbox_depth() == 0
    assert event_ids(journal.history(DAY)) == recorded
    assert record_for_seq(journal) == 301
    journal.close()


# --- full disk ---------------------------------------------------------------------------------


def test_full_disk_on_outbox_write_leaves_event_unrecorded(tmp_path: Path) -> None:
    disk = FlakyDisk()
    journal = Journal(tmp_path, writer=disk.write)
    kept = record_one(journal)
    outbox_before = (tmp_path / "journal" / "outbox.log").read_bytes()
    disk.full = True
    with pytest.raises(JournalError) as raised:
        record_one(journal)
    assert raised.value.errno == errno.ENOSPC
    assert (tmp_path / "journal" / "outbox.log").read_bytes() == outbox_before  # half line cut off
    assert event_ids(journal.pending()) == [kept]
    assert event_ids(journal.history(DAY)) == [kept]
    journal = _reopen(journal, tmp_path)
    assert event_ids(journal.pending()) == [kept]
    assert event_ids(journal.history(DAY)) == [kept]
    assert record_for_seq(journal) == 2  # the write that never landed used up no seq
    journal.close()


def test_full_disk_on_history_write_takes_event_back_out_of_outbox(tmp_path: Path) -> None:
    disk = FlakyDisk()
    journal = Journal(tmp_path, writer=disk.write)
    kept = record_one(journal)
    disk.script = [True, False]  # the outbox write fits, the history write does not
    draft = make_draft(ts=NOON)
    with pytest.raises(JournalError):
        journal.record(draft)
    assert event_ids(journal.pending()) == [kept]
    assert event_ids(journal.history(DAY)) == [kept]
    retried = journal.record(draft)  # as the recorder does once the disk has room
    assert retried.seq == 3  # seq 2 went with the failed write: a seq is never handed out twice
    journal = _reopen(journal, tmp_path)
    assert event_ids(journal.pending()) == [kept, draft.event_id]
    assert event_ids(journal.history(DAY)) == [kept, draft.event_id]
    assert record_for_seq(journal) == 4
    journal.close()


def test_journal_works_again_when_space_returns(tmp_path: Path) -> None:
    disk = FlakyDisk()
    journal = Journal(tmp_path, writer=disk.write)
    disk.full = True
    for _ in range(3):
        with pytest.raises(JournalError):
            record_one(journal)
    disk.full = False
    ids = [record_one(journal) for _ in range(2)]
    assert journal.acknowledge(ids[:1]) == 1
    assert event_ids(journal.pending()) == ids[1:]
    assert event_ids(journal.history(DAY)) == ids
    journal.close()


def test_event_stuck_in_outbox_by_a_double_fault_is_added_to_history_on_open(
    tmp_path: Path,
) -> None:
    disk = FlakyDisk()
    journal = Journal(tmp_path, writer=disk.write)
    disk.script = [True, False, False]  # the outbox write fits; history write and rollback fail
    draft = make_draft(ts=NOON)
    with pytest.raises(JournalError):
        journal.record(draft)
    [stuck] = journal.pending()  # what the disk holds: it will still be sent
    event = stuck.event()
    assert (event.event_id, event.seq) == (draft.event_id, 1)
    assert journal.history(DAY) == []
    assert journal.record(draft) == event  # the recorder's retry journals it no second time
    journal = _reopen(journal, tmp_path)
    assert journal.history(DAY) == [event]
    assert journal.pending() == [stuck]
    journal.close()


# --- damaged files -----------------------------------------------------------------------------


def _with_checksum(payload: bytes) -> bytes:
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


DAMAGES = {
    "bit-flip": lambda line: line.replace(b"Nguy", b"Ngux", 1),
    "garbage": lambda line: b"\x00\xff garbage\n",
    "right-checksum-wrong-shape": lambda line: _with_checksum(b"[1, 2, 3]"),
}


@pytest.mark.parametrize("damaged_line", [2, 3], ids=["middle-line", "last-line"])
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_outbox_line_keeps_the_rest_aside_and_seq_is_not_reused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str, damaged_line: int
) -> None:
    journal = Journal(tmp_path)
    ids = [record_one(journal) for _ in range(3)]
    journal.close()
    outbox = tmp_path / "journal" / "outbox.log"
    lines = _lines(outbox)
    lines[damaged_line - 1] = DAMAGES[damage](lines[damaged_line - 1])
    outbox.write_bytes(b"".join(lines))
    journal = Journal(tmp_path)
    assert f"line {damaged_line} is damaged" in caplog.text
    [kept_aside] = _set_aside(outbox.parent)
    assert kept_aside.read_bytes() == b"".join(lines[damaged_line - 1 :])
    assert outbox.read_bytes() == b"".join(lines[: damaged_line - 1])  # cut back to good lines
    assert event_ids(journal.pending()) == ids[: damaged_line - 1]
    assert event_ids(journal.history(DAY)) == ids
    later = journal.record(make_draft(ts=NOON))
    assert later.seq == 4  # the counter in the lost lines is recovered from the history
    journal = _reopen(journal, tmp_path)
    assert event_ids(journal.pending()) == [*ids[: damaged_line - 1], later.event_id]
    assert len(_set_aside(outbox.parent)) == 1  # nothing new was found damaged
    journal.close()


def test_torn_last_line_from_a_killed_write_is_ignored_and_cut_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal(tmp_path)
    ids = [record_one(journal) for _ in range(2)]
    journal.close()
    outbox = tmp_path / "journal" / "outbox.log"
    whole = outbox.read_bytes()
    outbox.write_bytes(whole + _with_checksum(b'{"events":{"3":{"event_id":"ev-x"}}}')[:30])
    journal = Journal(tmp_path)
    assert "ignored an incomplete last write (30 bytes)" in caplog.text
    assert event_ids(journal.pending()) == ids
    later = journal.record(make_draft(ts=NOON))
    assert later.seq == 3
    after = outbox.read_bytes()
    assert after.startswith(whole) and replay(after).good_end == len(after)  # torn bytes gone
    journal = _reopen(journal, tmp_path)
    assert event_ids(journal.pending()) == [*ids, later.event_id]
    assert _set_aside(outbox.parent) == []
    journal.close()


def test_damaged_history_segment_is_set_aside_and_refilled_from_outbox(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.acknowledge([record_one(journal)])
    still_pending = record_one(journal)
    journal.close()
    segment = tmp_path / "journal" / "history" / "2026-11-26.0001.log"
    segment.write_bytes(b"\x00\xff garbage\n")
    journal = Journal(tmp_path)
    assert len(list(segment.parent.glob("2026-11-26.0001.log.corrupt-*"))) == 1
    assert event_ids(journal.history(DAY)) == [still_pending]  # the acknowledged one is gone
    event_id = record_one(journal)
    assert event_ids(journal.history(DAY)) == [still_pending, event_id]
    journal.close()


def test_invalid_outbox_entry_is_dropped_and_the_original_kept(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    good, bad = record_one(journal), record_one(journal)
    journal.close()
    outbox = tmp_path / "journal" / "outbox.log"
    tampered = _stored(outbox)["events"]["2"] | {"status": "waved through"}
    outbox.write_bytes(outbox.read_bytes() + encode_line({"events": {"2": tampered}}))
    journal = Journal(tmp_path)
    assert event_ids(journal.pending()) == [good]
    [original] = _set_aside(outbox.parent)
    assert bad in original.read_text() and "waved through" in original.read_text()
    assert record_for_seq(journal) == 3
    journal.close()


def test_stray_temp_file_from_a_killed_write_is_removed_on_open(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    event_id = record_one(journal)
    journal.close()
    strays = [
        tmp_path / "journal" / ".outbox.log.k1ll3d.tmp",
        tmp_path / "journal" / "history" / ".2026-11-26.0001.log.k1ll3d.tmp",
    ]
    for stray in strays:
        stray.write_text('0badc0de {"events": {"9": ')
    journal = Journal(tmp_path)
    assert not [stray for stray in strays if stray.exists()]
    assert event_ids(journal.pending()) == [event_id]
    journal.close()


# --- retention ---------------------------------------------------------------------------------


def test_history_past_the_retention_is_deleted_at_open_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = SetClock(datetime(2026, 11, 3, 12, tzinfo=UTC))
    journal = Journal(tmp_path, clock=clock, retention_days=30)
    first_day = record_one(journal, datetime(2026, 11, 1, 12, tzinfo=UTC))  # never acknowledged
    acked = [record_one(journal, datetime(2026, 11, day, 12, tzinfo=UTC)) for day in (2, 3)]
    journal.acknowledge(acked)
    journal.close()
    history = tmp_path / "journal" / "history"
    (history / "2026-11-01.0001.log.corrupt-20261101T120000Z").write_bytes(b"damaged\n")
    (history / "README.txt").write_text("not a history file")
    clock.current = datetime(2026, 12, 3, 0, 30, tzinfo=UTC)  # Nov 3 is 30 days ago: kept
    with caplog.at_level(logging.INFO, logger="device.journal.journal"):
        journal = Journal(tmp_path, clock=clock, retention_days=30)
    assert _history_files(tmp_path) == ["2026-11-03.0001.log", "README.txt"]
    assert "deleted the history of 2026-11-01, 2026-11-02 (retention: 30 days)" in caplog.text
    assert event_ids(journal.pending()) == [first_day]  # the outbox is never purged...
    assert journal.history(date(2026, 11, 1)) == []  # ...nor refilled into expired history
    journal.close()


def test_history_is_purged_on_the_first_record_of_each_day(tmp_path: Path) -> None:
    clock = SetClock(datetime(2026, 11, 2, 12, tzinfo=UTC))
    journal = Journal(tmp_path, clock=clock, retention_days=30)
    record_one(journal, datetime(2026, 11, 1, 12, tzinfo=UTC))
    clock.current = datetime(2026, 12, 2, 8, tzinfo=UTC)  # Nov 1 is now past the retention
    assert "2026-11-01.0001.log" in _history_files(tmp_path)  # nothing purges between records
    record_one(journal, clock.current)
    assert _history_files(tmp_path) == ["2026-12-02.0001.log"]
    record_one(journal, datetime(2026, 11, 1, 13, tzinfo=UTC))  # a late event for an expired day
    record_one(journal, clock.current)
    assert "2026-11-01.0001.log" in _history_files(tmp_path)  # the day's purge already ran
    clock.current += timedelta(days=1)
    record_one(journal, clock.current)
    assert _history_files(tmp_path) == ["2026-12-02.0001.log", "2026-12-03.0001.log"]
    journal.close()


def test_journal_refuses_limits_below_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="history_max_entries"):
        Journal(tmp_path, history_max_entries=0)
    with pytest.raises(ValueError, match="retention_days"):
        Journal(tmp_path, retention_days=0)


def test_journal_opened_without_a_retention_deletes_no_history(tmp_path: Path) -> None:
    # A tool that does not know the site's retention (gatescan journal ...) must not guess one.
    clock = SetClock(datetime(2026, 11, 1, 12, tzinfo=UTC))
    with Journal(tmp_path, clock=clock) as journal:
        record_one(journal, clock.current)
    clock.current = datetime(2030, 1, 1, tzinfo=UTC)
    with Journal(tmp_path, clock=clock, retention_days=None) as journal:
        record_one(journal, clock.current)
    assert _history_files(tmp_path) == ["2026-11-01.0001.log", "2030-01-01.0001.log"]
