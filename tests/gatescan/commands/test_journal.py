"""`gatescan journal rejected|requeue` as a technician runs them: the real command in its own
process, on a real journal directory; and the way back end to end, through a real broker and
collector."""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from device.journal.journal import Journal
from device.uplink.link import Uplink
from device.verdict.events import EventDraft
from gatescan.testing.broker import LocalBroker
from protocol.messages import Event, Rejection
from protocol.verdicts import CredentialType, Direction, Reason, VerdictStatus
from server.collector.service import Collector
from server.store.database import Store
from tests.support.cli import run_gatescan
from tests.support.waiting import wait_until

NAME = "Nguyễn Thị Thu Uyên"
ID_NUMBER = "079193012345"
HEADER = ["seq", "event_id", "recorded_at", "rejected_at", "reason", "detail"]


def gatescan(args: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run_gatescan(args, timeout=timeout)


def record(journal: Journal, count: int, device_id: str = "gate-1") -> list[Event]:
    """`count` card entries, with the person's data the command must never print."""
    events = []
    for _ in range(count):
        event_id = f"ev-{uuid.uuid4().hex}"
        draft = EventDraft(
            event_id=event_id,
            device_id=device_id,
            boot_id="boot-1",
            ts=datetime.now(UTC),
            clock_synced=True,
            direction=Direction.IN,
            status=VerdictStatus.RECORDED,
            reason=Reason.OK,
            credential_type=CredentialType.CCCD,
            subject_id=ID_NUMBER,
            subject_name=NAME,
            code_sha256=hashlib.sha256(f"card-{event_id}".encode()).hexdigest(),
        )
        events.append(journal.record(draft))
    return events


def set_aside(data_dir: Path, count: int, kept: int = 0) -> list[Event]:
    """A closed journal holding `count` rejected events (and `kept` pending ones after them)."""
    with Journal(data_dir) as journal:
        refused = record(journal, count)
        record(journal, kept)
        journal.reject(
            Rejection(event_id=e.event_id, reason="schema", detail="direction: not in the set")
            for e in refused
        )
    return refused


def rows(stdout: str) -> list[list[str]]:
    header, *lines = [line.split("\t") for line in stdout.splitlines()]
    assert header == HEADER
    return lines


def test_rejected_lists_each_event_without_the_person_s_data(tmp_path: Path) -> None:
    refused = set_aside(tmp_path, 2, kept=1)

    result = gatescan(["journal", "rejected", "--data-dir", str(tmp_path)])

    assert result.returncode == 0, result.stderr
    listed = rows(result.stdout)
    assert [(row[0], row[1]) for row in listed] == [(str(e.seq), e.event_id) for e in refused]
    assert [row[2] for row in listed] == [e.ts.isoformat() for e in refused]
    assert {(row[4], row[5]) for row in listed} == {("schema", "direction: not in the set")}
    assert all(datetime.fromisoformat(row[3]).tzinfo is not None for row in listed)
    for personal in (ID_NUMBER, NAME, refused[0].code_sha256):
        assert personal not in result.stdout + result.stderr
    assert "2 rejected event(s)" in result.stderr


def test_requeue_all_puts_every_rejected_event_back_in_the_outbox(tmp_path: Path) -> None:
    refused = set_aside(tmp_path, 3, kept=1)

    result = gatescan(["journal", "requeue", "--all", "--data-dir", str(tmp_path)])

    assert result.returncode == 0, result.stderr
    assert [row[1] for row in rows(result.stdout)] == [e.event_id for e in refused]
    assert "moved 3 event(s) back to the outbox (4 pending)" in result.stderr
    with Journal(tmp_path) as journal:
        assert [e.event() for e in journal.pending()[:3]] == refused  # lowest seq first
        assert (journal.rejected(), record(journal, 1)[0].seq) == ([], 5)
    listing = gatescan(["journal", "rejected", "--data-dir", str(tmp_path)])
    assert rows(listing.stdout) == []


def test_requeue_by_id_moves_those_and_names_the_ids_it_could_not_find(tmp_path: Path) -> None:
    first, second = set_aside(tmp_path, 2)

    asked = ["--event-id", second.event_id, "--event-id", "ev-not-there"]
    result = gatescan(["journal", "requeue", "--data-dir", str(tmp_path), *asked])

    assert result.returncode == 1
    assert "not set aside (unknown, or already back): ev-not-there" in result.stderr
    with Journal(tmp_path) as journal:
        assert [e.event() for e in journal.pending()] == [second]
        assert [r.event for r in journal.rejected()] == [first]


def test_requeue_beside_a_running_agent_refuses_and_moves_nothing(tmp_path: Path) -> None:
    refused = set_aside(tmp_path, 1)
    with Journal(tmp_path) as running:  # holds the journal's lock, as the agent does
        listing = gatescan(["journal", "rejected", "--data-dir", str(tmp_path)])
        result = gatescan(["journal", "requeue", "--all", "--data-dir", str(tmp_path)])

        assert [row[1] for row in rows(listing.stdout)] == [refused[0].event_id]
        assert result.returncode == 1
        assert "open in another process" in result.stderr
        assert "stop the agent first" in result.stderr
        assert "Traceback" not in result.stderr
        assert running.pending() == []
        assert [r.event for r in running.rejected()] == refused


@pytest.mark.parametrize("action", [["rejected"], ["requeue", "--all"]])
def test_a_directory_without_a_journal_is_an_error_and_gets_none(
    tmp_path: Path, action: list[str]
) -> None:
    mistyped = tmp_path / "var-lib-gatescan"

    result = gatescan(["journal", *action, "--data-dir", str(mistyped)])

    assert result.returncode == 2
    assert f"no journal in {mistyped}" in result.stderr
    assert not mistyped.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_requeue_refuses_to_rewrite_a_journal_another_user_owns(tmp_path: Path) -> None:
    # Run as root, a compaction would leave a root-owned outbox the agent could not open.
    refused = set_aside(tmp_path, 1)
    outbox = tmp_path / "journal" / "outbox.log"
    os.chown(outbox, 4321, 4321)

    result = gatescan(["journal", "requeue", "--all", "--data-dir", str(tmp_path)])

    assert result.returncode == 1
    assert "belongs to uid 4321" in result.stderr
    os.chown(outbox, os.geteuid(), os.getegid())
    with Journal(tmp_path) as journal:
        assert [r.event for r in journal.rejected()] == refused


def test_events_requeued_after_the_cause_is_fixed_reach_the_collector(
    broker: LocalBroker, tmp_path: Path
) -> None:
    # The gate's device_id was changed by mistake while its outbox held events naming the old
    # one: the collector refused them (device_mismatch). The technician restores the id, then
    # requeues them, and the gate sends them under its right name.
    store = Store(tmp_path / "collector.db")
    collector = Collector(broker_url=broker.url, store=store)
    collector.start()
    try:
        assert collector.wait_until_subscribed(5)
        with Journal(tmp_path / "gate") as journal:
            refused = record(journal, 3, device_id="gate-old")
            with running_uplink(broker, journal, "gate-new"):
                wait_until(lambda: journal.rejected_count() == 3, 10, "the events set aside")
        result = gatescan(["journal", "requeue", "--all", "--data-dir", str(tmp_path / "gate")])
        assert result.returncode == 0, result.stderr
        with Journal(tmp_path / "gate") as journal, running_uplink(broker, journal, "gate-old"):
            wait_until(lambda: store.count_entries() == 3, 10, "the requeued events stored")
            wait_until(lambda: journal.pending() == [], 5, "the outbox to empty")
            assert journal.rejected() == []
    finally:
        collector.stop()
    assert sorted(entry.event.event_id for entry in store.entries()) == sorted(
        e.event_id for e in refused
    )


@contextmanager
def running_uplink(broker: LocalBroker, journal: Journal, device_id: str) -> Iterator[Uplink]:
    """The gate's real uplink, started for the block."""
    uplink = Uplink(
        device_id=device_id,
        broker_url=broker.url,
        journal=journal,
        version="1",
        boot_id="boot-1",
        resend_after=60,
    )
    uplink.start()
    try:
        yield uplink
    finally:
        uplink.stop(timeout=5)
