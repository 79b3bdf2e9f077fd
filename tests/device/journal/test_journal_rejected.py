"""Rejected events: set aside from the outbox for good, read by a technician, and moved back
(`requeue`) once the cause is fixed; each move one appended line, on real files. The only fakes
are the disk's write call (FlakyDisk) and a clock set by the test."""

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from device.journal.journal import Journal, JournalError
from protocol.messages import Rejection
from tests.support.journal_disk import (
    NOON,
    FlakyDisk,
    SetClock,
    event_ids,
    record_for_seq,
    record_one,
)

DAY = date(2026, 11, 26)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path) as opened:
        yield opened


def _reopen(journal: Journal, data_dir: Path) -> Journal:
    journal.close()
    return Journal(data_dir)


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _rejection(event_id: str, reason: str = "device_mismatch") -> Rejection:
    return Rejection(event_id=event_id, reason=reason, detail="topic names 'gate-02'")


def test_reject_moves_events_from_the_outbox_to_the_rejected_table_with_the_reason(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path, clock=SetClock(NOON))
    refused, kept = record_one(journal), record_one(journal)

    moved = journal.reject([_rejection(refused)])

    assert moved == [_rejection(refused)]
    assert event_ids(journal.pending()) == [kept]
    assert journal.outbox_depth() == 1
    [rejected] = journal.rejected()
    assert (rejected.event.event_id, rejected.event.seq) == (refused, 1)
    assert (rejected.reason, rejected.detail, rejected.rejected_at) == (
        "device_mismatch",
        "topic names 'gate-02'",
        NOON,
    )
    assert journal.rejected_count() == 1
    assert event_ids(journal.history(DAY)) == [refused, kept]  # the history keeps what was recorded
    journal.close()


def test_rejected_events_stay_set_aside_after_reopening_and_seq_is_not_reused(
    tmp_path: Path, journal: Journal
) -> None:
    refused = [record_one(journal) for _ in range(3)]
    journal.reject([_rejection(event_id, "schema") for event_id in refused])

    journal = _reopen(journal, tmp_path)

    assert journal.pending() == []
    assert [r.event.event_id for r in journal.rejected()] == refused
    assert journal.rejected_count() == 3
    assert record_for_seq(journal) == 4
    journal.close()


def test_reject_ignores_events_no_longer_in_the_outbox(journal: Journal) -> None:
    acked, refused = record_one(journal), record_one(journal)
    journal.acknowledge([acked])
    journal.reject([_rejection(refused)])

    # An ack that came first, an unknown id, and a second rejection of the same event.
    moved = journal.reject([_rejection(acked), _rejection("evt-unknown-1"), _rejection(refused)])

    assert moved == []
    assert [r.event.event_id for r in journal.rejected()] == [refused]
    assert journal.rejected_count() == 1


def test_reject_moves_an_event_in_one_appended_line(tmp_path: Path, journal: Journal) -> None:
    # One line: a crash leaves the event either in the outbox or in the rejected table.
    outbox = tmp_path / "journal" / "outbox.log"
    refused = record_one(journal)
    before = _lines(outbox)

    journal.reject([_rejection(refused)])

    assert _lines(outbox)[:-1] == before
    assert b'"events":{"1":null}' in _lines(outbox)[-1]
    assert b'"rejected":{"1":' in _lines(outbox)[-1]


def test_full_disk_while_rejecting_leaves_the_events_in_the_outbox(tmp_path: Path) -> None:
    disk = FlakyDisk()
    journal = Journal(tmp_path, writer=disk.write)
    refused = record_one(journal)
    disk.full = True

    with pytest.raises(JournalError):
        journal.reject([_rejection(refused)])

    assert event_ids(journal.pending()) == [refused]
    assert journal.rejected() == []
    disk.full = False
    assert journal.reject([_rejection(refused)]) == [_rejection(refused)]  # and later it works
    journal = _reopen(journal, tmp_path)
    assert (journal.pending(), journal.rejected_count()) == ([], 1)
    journal.close()


# --- requeue: back to the outbox -----------------------------------------------------------------


def test_requeue_moves_every_rejected_event_back_to_the_outbox_in_seq_order(
    tmp_path: Path, journal: Journal
) -> None:
    first, kept, third = record_one(journal), record_one(journal), record_one(journal)
    journal.reject([_rejection(third), _rejection(first)])
    set_aside = [r.event for r in journal.rejected()]

    moved = journal.requeue()

    assert [r.event for r in moved] == set_aside  # the very events, unchanged
    assert event_ids(journal.pending()) == [first, kept, third]  # lowest seq first, as ever
    requeued = journal.pending()
    assert [requeued[0].wire, requeued[2].wire] == [event.to_json() for event in set_aside]
    assert (journal.rejected(), journal.rejected_count(), journal.outbox_depth()) == ([], 0, 3)
    journal = _reopen(journal, tmp_path)
    assert journal.pending() == requeued  # ids, seqs and wire bytes alike
    assert journal.rejected_count() == 0
    assert event_ids(journal.history(DAY)) == [first, kept, third]  # the history has each once
    assert record_for_seq(journal) == 4
    journal.close()


def test_requeue_by_id_moves_only_those_and_ignores_unknown_ids(journal: Journal) -> None:
    first, second = record_one(journal), record_one(journal)
    journal.reject([_rejection(first), _rejection(second, "schema")])

    moved = journal.requeue([second, "evt-unknown-1", second])

    assert [r.event.event_id for r in moved] == [second]
    assert moved[0].reason == "schema"
    assert event_ids(journal.pending()) == [second]
    assert [r.event.event_id for r in journal.rejected()] == [first]
    assert journal.rejected_count() == 1
    assert journal.requeue([second]) == []  # already back: nothing to move


def test_requeued_event_can_be_acknowledged_or_rejected_again(journal: Journal) -> None:
    acked, refused = record_one(journal), record_one(journal)
    journal.reject([_rejection(acked), _rejection(refused)])
    journal.requeue()

    assert journal.acknowledge([acked]) == 1
    assert journal.reject([_rejection(refused, "schema")]) == [_rejection(refused, "schema")]

    assert journal.pending() == []
    assert [(r.event.event_id, r.reason) for r in journal.rejected()] == [(refused, "schema")]


def test_requeue_moves_events_in_one_appended_line(tmp_path: Path, journal: Journal) -> None:
    # One line: a crash leaves each event either set aside or back in the outbox.
    outbox = tmp_path / "journal" / "outbox.log"
    refused = [record_one(journal), record_one(journal)]
    journal.reject([_rejection(event_id) for event_id in refused])
    before = _lines(outbox)

    journal.requeue()

    assert _lines(outbox)[:-1] == before
    assert b'"events":{"1":{' in _lines(outbox)[-1]
    assert b'"rejected":{"1":null,"2":null}' in _lines(outbox)[-1]


def test_full_disk_while_requeueing_leaves_the_events_set_aside(tmp_path: Path) -> None:
    disk = FlakyDisk()
    journal = Journal(tmp_path, writer=disk.write)
    refused = record_one(journal)
    journal.reject([_rejection(refused)])
    disk.full = True

    with pytest.raises(JournalError, match="requeueing"):
        journal.requeue()

    assert journal.pending() == []
    assert [r.event.event_id for r in journal.rejected()] == [refused]
    disk.full = False
    assert [r.event.event_id for r in journal.requeue()] == [refused]  # and later it works
    journal = _reopen(journal, tmp_path)
    assert (event_ids(journal.pending()), journal.rejected_count()) == ([refused], 0)
    journal.close()


def test_requeue_refuses_a_bare_string(journal: Journal) -> None:
    with pytest.raises(TypeError):
        journal.requeue("evt-1")
