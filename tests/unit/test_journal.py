"""The journal on real files: outbox, seq, daily history segments, acks, threads, full disk,
corrupt files. The only fake is the disk's write call (FlakyDisk), to simulate ENOSPC."""

import errno
import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from device.journal import Journal, JournalError
from device.tinydb_storage import AtomicJSONStorage, write_fully
from protocol import Event
from tests.unit.journal_writer import make_event

DAY = date(2026, 11, 26)
NOON = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class FlakyDisk:
    """The write call of a disk that can run out of space. A write that does not fit writes half
    its bytes and fails with ENOSPC, as on a full filesystem. `script` gives the fate of the next
    writes in turn (True: fits); once it is used up, `full` decides."""

    def __init__(self) -> None:
        self.script: list[bool] = []
        self.full = False

    def write(self, fd: int, data: bytes) -> None:
        fits = self.script.pop(0) if self.script else not self.full
        if not fits:
            os.write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write_fully(fd, data)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path) as opened:
        yield opened


def _reopen(journal: Journal, data_dir: Path, history_max_entries: int = 2000) -> Journal:
    journal.close()
    return Journal(data_dir, history_max_entries=history_max_entries)


def _record(journal: Journal, ts: datetime = NOON) -> str:
    event = make_event(journal.next_seq(), ts=ts)
    journal.record(event)
    return event.event_id


def _ids(events: list[Event]) -> list[str]:
    return [event.event_id for event in events]


def _history_files(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "journal" / "history").iterdir())


# --- outbox, acks, seq -------------------------------------------------------------------------


def test_event_leaves_outbox_only_after_ack(journal: Journal) -> None:
    event_id = _record(journal)
    assert _ids(journal.pending()) == [event_id]
    assert journal.outbox_depth() == 1
    assert journal.acknowledge([event_id]) == 1
    assert journal.pending() == []
    assert journal.outbox_depth() == 0


def test_recorded_event_reads_back_equal(journal: Journal) -> None:
    event = make_event(journal.next_seq(), ts=NOON)
    journal.record(event)
    assert journal.pending() == [event]
    assert journal.history(DAY) == [event]
    assert journal.pending()[0].subject_name == "Nguyễn Văn An"


def test_pending_is_lowest_seq_first_and_honours_limit(journal: Journal) -> None:
    ids = [_record(journal) for _ in range(5)]
    assert _ids(journal.pending()) == ids
    assert _ids(journal.pending(limit=2)) == ids[:2]
    assert journal.pending(limit=0) == []
    journal.acknowledge([ids[0], ids[3]])
    assert _ids(journal.pending()) == [ids[1], ids[2], ids[4]]


def test_unknown_ack_ids_are_ignored(journal: Journal) -> None:
    kept, acked = _record(journal), _record(journal)
    assert journal.acknowledge(["ev-never-recorded", acked, acked]) == 1
    assert journal.acknowledge([acked]) == 0
    assert journal.acknowledge([]) == 0
    assert _ids(journal.pending()) == [kept]


def test_acknowledge_refuses_a_bare_string(journal: Journal) -> None:
    _record(journal)
    with pytest.raises(TypeError):
        journal.acknowledge("ev-0123456789")


def test_next_seq_starts_at_one_and_survives_reopen(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    assert journal.next_seq() == 1
    for _ in range(3):
        _record(journal)
    journal = _reopen(journal, tmp_path)
    assert journal.next_seq() == 4
    journal.close()


def test_seq_survives_reopen_after_every_event_is_acknowledged(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.acknowledge([_record(journal), _record(journal)])
    journal = _reopen(journal, tmp_path)
    assert journal.outbox_depth() == 0
    assert journal.next_seq() == 3
    journal.close()


def test_record_refuses_a_seq_already_used(journal: Journal) -> None:
    event_id = _record(journal)
    with pytest.raises(ValueError, match="already used"):
        journal.record(make_event(1))
    with pytest.raises(ValueError, match="already in the outbox"):
        journal.record(make_event(2, event_id=event_id))
    assert journal.outbox_depth() == 1


def test_outbox_file_holds_only_unacknowledged_events(tmp_path: Path, journal: Journal) -> None:
    ids = [_record(journal) for _ in range(10)]
    journal.acknowledge(ids[:9])
    stored = json.loads((tmp_path / "journal" / "outbox.json").read_bytes())
    assert [doc["event_id"] for doc in stored["events"].values()] == ids[9:]
    assert stored["meta"] == {"1": {"last_seq": 10}}


def test_closed_journal_refuses_use(journal: Journal) -> None:
    journal.close()
    journal.close()  # closing twice is harmless
    with pytest.raises(ValueError, match="closed"):
        journal.record(make_event(1))


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
    before = [_record(journal, late), _record(journal, hanoi_morning)]
    after = [_record(journal, NOON)]
    assert _ids(journal.history(DAY - timedelta(days=1))) == before
    assert _ids(journal.history(DAY)) == after
    assert journal.history(DAY + timedelta(days=1)) == []
    assert _history_files(tmp_path) == ["2026-11-25.0001.json", "2026-11-26.0001.json"]


def test_history_rolls_over_to_a_new_segment_when_full(tmp_path: Path) -> None:
    journal = Journal(tmp_path, history_max_entries=3)
    ids = [_record(journal) for _ in range(7)]
    assert _history_files(tmp_path) == [f"2026-11-26.000{n}.json" for n in (1, 2, 3)]
    journal = _reopen(journal, tmp_path, history_max_entries=3)
    ids += [_record(journal) for _ in range(3)]  # fills segment 3, then starts segment 4
    assert _history_files(tmp_path)[-1] == "2026-11-26.0004.json"
    assert _ids(journal.history(DAY)) == ids
    segment = json.loads((tmp_path / "journal" / "history" / "2026-11-26.0003.json").read_bytes())
    assert len(segment["events"]) == 3
    journal.close()


def test_history_keeps_acknowledged_events(journal: Journal) -> None:
    ids = [_record(journal) for _ in range(3)]
    journal.acknowledge(ids)
    assert _ids(journal.history(DAY)) == ids


# --- threads -----------------------------------------------------------------------------------


def test_acking_while_recording_loses_nothing(tmp_path: Path, journal: Journal) -> None:
    recorded: list[str] = []
    acked: list[int] = []
    recording_done = threading.Event()

    def record_many() -> None:
        for _ in range(300):
            recorded.append(_record(journal))
        recording_done.set()

    def ack_what_is_pending() -> None:
        while not (recording_done.is_set() and journal.outbox_depth() == 0):
            acked.append(journal.acknowledge(_ids(journal.pending(limit=7))))

    threads = [threading.Thread(target=record_many), threading.Thread(target=ack_what_is_pending)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(acked) == 300
    journal = _reopen(journal, tmp_path)
    assert journal.outbox_depth() == 0
    assert _ids(journal.history(DAY)) == recorded
    assert journal.next_seq() == 301
    journal.close()


# --- full disk ---------------------------------------------------------------------------------


def test_full_disk_on_outbox_write_leaves_event_unrecorded(tmp_path: Path) -> None:
    disk = FlakyDisk()
    journal = Journal(tmp_path, writer=disk.write)
    kept = _record(journal)
    outbox_before = (tmp_path / "journal" / "outbox.json").read_bytes()
    disk.full = True
    with pytest.raises(JournalError) as raised:
        _record(journal)
    assert raised.value.errno == errno.ENOSPC
    assert (tmp_path / "journal" / "outbox.json").read_bytes() == outbox_before
    assert _ids(journal.pending()) == [kept]
    assert _ids(journal.history(DAY)) == [kept]
    assert journal.next_seq() == 2
    journal = _reopen(journal, tmp_path)
    assert _ids(journal.pending()) == [kept]
    assert _ids(journal.history(DAY)) == [kept]
    journal.close()


def test_full_disk_on_history_write_takes_event_back_out_of_outbox(tmp_path: Path) -> None:
    disk = FlakyDisk()
    journal = Journal(tmp_path, writer=disk.write)
    kept = _record(journal)
    disk.script = [True, False]  # the outbox write fits, the history write does not
    disk_full_on_history = make_event(journal.next_seq(), ts=NOON)
    with pytest.raises(JournalError):
        journal.record(disk_full_on_history)
    assert _ids(journal.pending()) == [kept]
    assert journal.next_seq() == disk_full_on_history.seq + 1  # a seq is never handed out twice
    journal = _reopen(journal, tmp_path)
    assert _ids(journal.pending()) == [kept]
    assert _ids(journal.history(DAY)) == [kept]
    journal.close()


def test_journal_works_again_when_space_returns(tmp_path: Path) -> None:
    disk = FlakyDisk()
    journal = Journal(tmp_path, writer=disk.write)
    disk.full = True
    for _ in range(3):
        with pytest.raises(JournalError):
            _record(journal)
    disk.full = False
    ids = [_record(journal) for _ in range(2)]
    assert journal.acknowledge(ids[:1]) == 1
    assert _ids(journal.pending()) == ids[1:]
    assert _ids(journal.history(DAY)) == ids
    journal.close()


def test_event_stuck_in_outbox_by_a_double_fault_is_added_to_history_on_open(
    tmp_path: Path,
) -> None:
    disk = FlakyDisk()
    journal = Journal(tmp_path, writer=disk.write)
    disk.script = [True, False, False]  # the outbox write fits; history write and rollback fail
    event = make_event(journal.next_seq(), ts=NOON)
    with pytest.raises(JournalError):
        journal.record(event)
    assert journal.pending() == [event]  # what the disk holds: it will still be sent
    assert journal.history(DAY) == []
    journal = _reopen(journal, tmp_path)
    assert journal.history(DAY) == [event]
    assert journal.pending() == [event]
    journal.close()


# --- damaged files -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    ['{"events": {"1": {"event_id": "ev-trunc', "", "[1, 2, 3]", '{"events": {"x": 1}}'],
    ids=["truncated", "empty", "not-an-object", "not-tinydb"],
)
def test_corrupt_outbox_is_set_aside_and_seq_is_not_reused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    journal = Journal(tmp_path)
    ids = [_record(journal) for _ in range(3)]
    journal.close()
    outbox = tmp_path / "journal" / "outbox.json"
    outbox.write_text(damage)
    journal = Journal(tmp_path)
    assert "corrupt" in caplog.text
    set_aside = list(outbox.parent.glob("outbox.json.corrupt-*"))
    assert [p.read_text() for p in set_aside] == [damage]
    assert journal.pending() == []
    assert journal.next_seq() == 4  # recovered from the history
    assert _ids(journal.history(DAY)) == ids
    _record(journal)
    journal.close()


def test_corrupt_history_segment_is_set_aside_and_refilled_from_outbox(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.acknowledge([_record(journal)])
    still_pending = _record(journal)
    journal.close()
    segment = tmp_path / "journal" / "history" / "2026-11-26.0001.json"
    segment.write_bytes(b"\x00\xff garbage")
    journal = Journal(tmp_path)
    assert len(list(segment.parent.glob("2026-11-26.0001.json.corrupt-*"))) == 1
    assert _ids(journal.history(DAY)) == [still_pending]  # the acknowledged one is gone
    event_id = _record(journal)
    assert _ids(journal.history(DAY)) == [still_pending, event_id]
    journal.close()


def test_invalid_outbox_entry_is_dropped_and_the_original_kept(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    good, bad = _record(journal), _record(journal)
    journal.close()
    outbox = tmp_path / "journal" / "outbox.json"
    stored = json.loads(outbox.read_bytes())
    stored["events"]["2"]["status"] = "waved through"
    outbox.write_text(json.dumps(stored))
    journal = Journal(tmp_path)
    assert _ids(journal.pending()) == [good]
    assert journal.next_seq() == 3
    assert (
        bad in outbox.with_name(next(outbox.parent.glob("outbox.json.corrupt-*")).name).read_text()
    )
    journal.close()


def test_stray_temp_file_from_a_killed_write_is_removed_on_open(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    event_id = _record(journal)
    journal.close()
    strays = [
        tmp_path / "journal" / ".outbox.json.k1ll3d.tmp",
        tmp_path / "journal" / "history" / ".2026-11-26.0001.json.k1ll3d.tmp",
    ]
    for stray in strays:
        stray.write_text('{"events": {"9": ')
    journal = Journal(tmp_path)
    assert not [stray for stray in strays if stray.exists()]
    assert _ids(journal.pending()) == [event_id]
    journal.close()


# --- the storage on its own --------------------------------------------------------------------


def test_storage_reads_none_for_a_missing_file(tmp_path: Path) -> None:
    assert AtomicJSONStorage(tmp_path / "absent.json").read() is None


def test_storage_writes_what_json_would_after_inserts_and_removes(tmp_path: Path) -> None:
    path = tmp_path / "db.json"
    storage = AtomicJSONStorage(path, append_only_tables={"events"})
    docs: dict[str, Any] = {str(n): {"n": n, "name": "Nguyễn"} for n in range(1, 6)}
    storage.write({"events": dict(docs), "meta": {"1": {"last": 5}}})
    del docs["2"]
    docs["6"] = {"n": 6, "name": "Trần"}
    state: dict[str, dict[str, Any]] = {"events": dict(docs), "meta": {"1": {"last": 6}}}
    storage.write(state)
    assert json.loads(path.read_bytes()) == state
    state["meta"]["1"]["last"] = 7  # other tables may change a document in place
    storage.write(state)
    assert json.loads(path.read_bytes()) == state
    assert AtomicJSONStorage(path).read() == state


def test_storage_failed_write_keeps_the_old_file_and_rereads_it(tmp_path: Path) -> None:
    disk = FlakyDisk()
    path = tmp_path / "db.json"
    storage = AtomicJSONStorage(path, writer=disk.write)
    storage.write({"t": {"1": {"v": 1}}})
    disk.full = True
    with pytest.raises(OSError, match="No space"):
        storage.write({"t": {"1": {"v": 1}, "2": {"v": 2}}})
    assert storage.read() == {"t": {"1": {"v": 1}}}
    assert [p.name for p in tmp_path.iterdir()] == ["db.json"]  # no temp file left behind
