"""Issue 3, scenario 4: the collector SIGKILLed during ingest, before and after its commit.

The collector is the real `gatescan collector` process; it is killed at an exact step of its
ingest by a failpoint (server/collector/failpoints.py: before the commit, after it, after the ack),
and at
random moments of a stream. Every event ends up stored exactly once and the gate's outbox empties:
the ack comes only after the commit, the broker redelivers what the collector never PUBACKed, the
gate resends what was never acked, and the store keeps each event_id once.

The gate side is the real device.uplink.Uplink and device.journal.Journal in this process, fed
through the gate's own parse -> policy -> EventBuilder path, rather than the agent process with a
camera: the collector is what is under test, and in-process the test knows exactly which events
exist and can read the outbox at the moment of each kill. (The agent process is the subject of
scenarios 1-3 and 5-6, tests/scenarios/test_outages.py and friends.)
"""

from __future__ import annotations

import random
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gatescan.testing.broker import LocalBroker
from gatescan.testing.collector_process import CollectorProcess
from gatescan.testing.samples import cccd_payload
from server.collector.failpoints import AFTER_ACK, AFTER_COMMIT, BEFORE_COMMIT
from server.store.database import Store
from tests.support.fault_site import Figures, tally
from tests.support.journal_gate import JournalGate

DEVICE = "gate-crash-01"
BOOT_ID = "0f0e5c1a-4f54-4a43-9d35-6c2b2f1a7e11"
RESEND_AFTER_S = 1.0  # the gate resends what is not acked after this; 10 s on a real gate
DRAIN_TIMEOUT_S = 60.0
_STORED_LINE = re.compile(r"stored (\d+) new, (\d+) duplicate")


def cards(count: int, batch: int) -> list[bytes]:
    return [
        cccd_payload(
            f"079085{batch:02d}{n:04d}", "Trần Văn Đức", "03111985", "Nam", "Huế", "22072021"
        )
        for n in range(count)
    ]


@dataclass
class Site:
    broker: LocalBroker
    root: Path
    store: Store
    gate: JournalGate
    started: list[CollectorProcess] = field(default_factory=list)

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.root / 'collector.db'}"

    def collector(self, failpoints: str | None = None) -> CollectorProcess:
        """A collector process, stopped by the fixture at the end if it is still running."""
        process = CollectorProcess(
            broker_url=self.broker.url,
            db_url=self.db_url,
            log_path=self.root / "collector.log",
            failpoints=failpoints,
            log_level="debug",  # its "stored N new, M duplicate" lines count the redeliveries
        )
        self.started.append(process)
        return process

    def stored_ids(self) -> set[str]:
        return {entry.event_id for entry in self.store.entries(device_id=DEVICE)}

    def wait_until_outbox_empty(self, timeout: float = DRAIN_TIMEOUT_S) -> float:
        """Seconds until the gate's outbox is empty (every event acked)."""
        started = time.monotonic()
        while self.gate.journal.outbox_depth() > 0:
            if time.monotonic() - started > timeout:
                left = self.gate.journal.outbox_depth()
                raise AssertionError(f"{left} events still in the outbox after {timeout} s")
            time.sleep(0.02)  # a journal to poll: no event to wait on
        return time.monotonic() - started

    def deduplicated(self) -> int:
        """Events the collector runs received again and did not store again (their logs)."""
        log = (self.root / "collector.log").read_text(encoding="utf-8", errors="replace")
        return sum(int(duplicates) for _, duplicates in _STORED_LINE.findall(log))


@pytest.fixture
def site(broker: LocalBroker, tmp_path: Path) -> Iterator[Site]:
    store = Store(tmp_path / "collector.db")  # created first, so the test can read it at once
    gate = JournalGate(
        broker.url, tmp_path / "gate", device_id=DEVICE, boot_id=BOOT_ID,
        resend_after=RESEND_AFTER_S, version="crash-test",
    )  # fmt: skip
    running = Site(broker, tmp_path, store, gate)
    try:
        yield running
    finally:
        for process in running.started:
            if process.running():
                process.stop()
        gate.close()
        store.close()


@pytest.mark.parametrize(
    ("point", "committed_at_kill", "scenario"),
    [(BEFORE_COMMIT, 2, "4a"), (AFTER_COMMIT, 3, "4b"), (AFTER_ACK, 3, "4c")],
)
def test_collector_killed_at_a_failpoint_stores_every_event_exactly_once(
    site: Site,
    point: str,
    committed_at_kill: int,
    scenario: str,
    record_figures: Callable[[Figures], None],
) -> None:
    doomed = site.collector(failpoints=f"{point}=kill:3").wait_until_subscribed()
    site.gate.uplink.start()
    events = [site.gate.show(code) for code in cards(10, batch=1)]

    assert doomed.wait_for_exit() == -signal.SIGKILL
    assert f"failpoint {point} reached (hit 3)" in doomed.log_text()
    # The third events message killed it: what its database holds is exactly what was committed.
    assert site.stored_ids() == {event.event_id for event in events[:committed_at_kill]}
    # Only an ack lets an event leave the outbox, and acks follow commits: nothing left unstored.
    assert {event.event_id for event in events} - site.gate.pending_ids() <= site.stored_ids()
    if point != AFTER_ACK:
        assert events[2].event_id in site.gate.pending_ids()  # never acked: it will come again

    survivor = site.collector().wait_until_subscribed()
    site.wait_until_outbox_empty()
    recover_s = time.monotonic() - survivor.started_at  # from the restart to the last ack
    stored = list(site.store.entries(device_id=DEVICE))

    counts = tally(events, stored)
    assert (counts.shown, counts.stored, counts.duplicates, counts.lost) == (10, 10, 0, 0)
    assert [entry.event for entry in stored] == sorted(events, key=lambda e: (e.ts, e.event_id))
    if point != BEFORE_COMMIT:
        assert site.deduplicated() >= 1  # the third event came again and was not stored twice
    record_figures(
        Figures(
            scenario=scenario,
            title=f"collector SIGKILLed at {point} (3rd event), restarted",
            tally=counts,
            recover_s=recover_s,
            notes=f"{site.deduplicated()} redeliveries deduplicated by event_id",
        )
    )


@dataclass(frozen=True)
class Kill:
    after_s: float  # after the collector started (during_restart) or had subscribed
    during_restart: bool
    outbox_depth: int  # events the gate had not had acked at that moment
    stored: int  # events in the database just before the kill


def feed(gate: JournalGate, codes: list[bytes], every_s: float, stop: threading.Event) -> None:
    for code in codes:
        gate.show(code)
        if stop.wait(every_s):
            return


@pytest.mark.slow
def test_collector_killed_at_random_moments_stores_every_event_exactly_once(
    site: Site, record_figures: Callable[[Figures], None]
) -> None:
    rng = random.Random(4)  # the schedule of kills is the same on every run
    site.gate.uplink.start()
    stop = threading.Event()
    feeder = threading.Thread(target=feed, args=(site.gate, cards(300, batch=2), 0.02, stop))
    feeder.start()
    kills: list[Kill] = []
    try:
        for round_number in range(10):
            # Every other kill lands while the collector restarts and takes in the backlog that
            # built up while it was down: a random moment of its first 0.3 s (it starts,
            # connects, and the broker hands it the queued events at once). The others land at a
            # random moment after it subscribed, mostly in the live stream: ingest is fast, so
            # a time after subscribing seldom finds the backlog still there.
            during_restart = round_number % 2 == 0
            moment_s = rng.uniform(0.0, 0.3 if during_restart else 0.25)
            collector = site.collector()
            if not during_restart:
                collector.wait_until_subscribed()
            since = time.monotonic()
            time.sleep(moment_s)  # the random moment itself, not a wait for something
            depth, stored_now = site.gate.journal.outbox_depth(), len(site.stored_ids())
            kills.append(Kill(time.monotonic() - since, during_restart, depth, stored_now))
            collector.kill()
        feeder.join(timeout=DRAIN_TIMEOUT_S)
        assert not feeder.is_alive(), "the gate could not journal its scans"
        final = site.collector().wait_until_subscribed()
        site.wait_until_outbox_empty()
        recover_s = time.monotonic() - final.started_at
    finally:
        stop.set()
        feeder.join()
    stored = list(site.store.entries(device_id=DEVICE))

    counts = tally(site.gate.shown, stored)
    assert (counts.shown, counts.stored, counts.duplicates, counts.lost) == (300, 300, 0, 0)
    assert counts.invented == 0
    stored_by_id = {entry.event_id: entry.event for entry in stored}
    assert all(stored_by_id[event.event_id] == event for event in site.gate.shown)
    in_flight = [kill.outbox_depth for kill in kills]
    # The kills aimed at a restart found events the gate had not had acked (nearly all of them).
    assert sum(kill.outbox_depth > 0 for kill in kills if kill.during_restart) >= 4, kills
    record_figures(
        Figures(
            scenario="4d",
            title="collector SIGKILLed at 10 random moments during 300 scans",
            tally=counts,
            recover_s=recover_s,
            notes=(
                f"events not yet acked at each kill: {in_flight}; "
                f"{site.deduplicated()} redeliveries deduplicated; recover = last restart "
                "(process start included) to empty outbox"
            ),
        )
    )
