"""The collector's writer thread on a real SQLite file: batches, back-pressure, order of steps."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from protocol.messages import Ack, Event
from protocol.topics import Topic, device_topic
from server.collector.batch import MessageHandler
from server.collector.failpoints import AFTER_ACK, AFTER_COMMIT, BEFORE_COMMIT, Failpoints
from server.collector.prepare import AcceptedEvent, IncomingMessage, Refused
from server.collector.writer import BatchQueue, Delivery, IngestWriter
from server.store.database import Store
from tests.support.waiting import wait_until

TS = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)


def event_message(n: int, device_id: str = "gate-01") -> IncomingMessage:
    event = Event.model_validate(
        {
            "event_id": f"evt-{device_id}-{n:04d}",
            "device_id": device_id,
            "seq": n,
            "boot_id": "boot-1",
            "ts": TS,
            "clock_synced": True,
            "direction": "in",
            "status": "recorded",
            "reason": "ok",
            "credential_type": "cccd",
            "subject_id": "001203004567",
            "subject_name": "Lê Văn Tám",
            "code_sha256": "ab" * 32,
        }
    )
    return IncomingMessage(device_topic(device_id, Topic.EVENTS), event.to_json())


class Steps:
    """What happened, in order: commits seen by the store, acks sent, PUBACKs sent."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.log: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def send_ack(self, device_id: str, payload: bytes) -> bool:
        ack = Ack.model_validate_json(payload)
        with self.lock:
            self.log.append(("ack", (device_id, list(ack.event_ids), self.store.count_entries())))
        return True

    def puback(self, batch: Sequence[Delivery]) -> None:
        with self.lock:
            self.log.append(("puback", ([d.mid for d in batch], self.store.count_entries())))

    def of(self, kind: str) -> list[Any]:
        with self.lock:
            return [what for step, what in self.log if step == kind]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "gatescan.db") as opened:
        yield opened


def start_writer(
    store: Store, steps: Steps, failpoints: Failpoints | None = None, **options: Any
) -> tuple[MessageHandler, IngestWriter]:
    handler = MessageHandler(store=store, send_ack=steps.send_ack, failpoints=failpoints)
    writer = IngestWriter(handler=handler, puback=steps.puback, failpoints=failpoints, **options)
    return handler, writer


def test_queued_messages_are_committed_as_one_batch_then_acked_then_pubacked(
    store: Store,
) -> None:
    steps = Steps(store)
    handler, writer = start_writer(store, steps)
    messages = [event_message(n, device) for n in range(5) for device in ("gate-01", "gate-02")]
    for mid, message in enumerate(messages, start=1):
        writer.submit(Delivery(handler.prepare(message), mid, 1, connection=1))

    writer.start()  # everything is waiting: one batch
    wait_until(lambda: steps.of("puback"), 5, "the PUBACKs")
    writer.stop()

    assert handler.counters.batches == 1
    acks = steps.of("ack")
    assert sorted(device for device, _, _ in acks) == ["gate-01", "gate-02"]
    assert all(len(ids) == 5 and stored == 10 for _, ids, stored in acks)  # after the commit
    assert steps.of("puback") == [(list(range(1, 11)), 10)]  # in the order received
    assert [step for step, _ in steps.log] == ["ack", "ack", "puback"]


def test_a_full_queue_blocks_the_producer_and_drops_nothing() -> None:
    queue = BatchQueue(capacity=3)
    refused = Refused(IncomingMessage("t", b"{"), "not_json", "cut short")
    produced = threading.Event()

    def produce() -> None:
        for mid in range(10):
            queue.put(Delivery(refused, mid, 1, 1))
        produced.set()

    threading.Thread(target=produce, daemon=True).start()
    wait_until(lambda: len(queue) == 3, 5, "a full queue")
    assert not produced.wait(0.2)  # blocked: the broker-side window fills instead

    taken: list[int] = []
    while len(taken) < 10:
        taken += [d.mid for d in queue.take(2, gather_s=0, max_events=None, wait_s=5)]
    assert produced.wait(5)
    assert taken == list(range(10))


def test_an_armed_failpoint_gets_its_message_alone_in_a_batch(store: Store) -> None:
    steps = Steps(store)
    kills: list[int] = []  # entries committed when the point was reached
    failpoints = Failpoints({AFTER_COMMIT: 4}, kill=lambda: kills.append(store.count_entries()))
    handler, writer = start_writer(store, steps, failpoints)
    for mid in range(1, 8):
        writer.submit(Delivery(handler.prepare(event_message(mid)), mid, 1, connection=1))

    writer.start()
    wait_until(lambda: sum(len(mids) for mids, _ in steps.of("puback")) == 7, 5, "PUBACKs")
    writer.stop()

    # Up to the 3rd message, then the 4th alone (where the kill is), then the rest.
    assert [mids for mids, _ in steps.of("puback")] == [[1, 2, 3], [4], [5, 6, 7]]
    assert kills == [4]


@pytest.mark.parametrize("point", [BEFORE_COMMIT, AFTER_COMMIT, AFTER_ACK])
def test_each_failpoint_counts_events_messages_not_batches(point: str) -> None:
    kills: list[int] = []
    failpoints = Failpoints({point: 5}, kill=lambda: kills.append(1))

    failpoints.reached(point, 3)
    assert (kills, failpoints.messages_until_kill()) == ([], 2)
    failpoints.reached(point, 0)  # a batch without events
    failpoints.reached(point, 2)
    assert (kills, failpoints.messages_until_kill()) == ([1], None)


def test_a_refused_message_is_pubacked_with_its_batch_and_nothing_else_waits(
    store: Store,
) -> None:
    steps = Steps(store)
    handler, writer = start_writer(store, steps)
    messages = [
        event_message(1),
        IncomingMessage(device_topic("gate-01", Topic.EVENTS), b"{not json"),
        event_message(2),
    ]
    prepared = [handler.prepare(message) for message in messages]
    assert [type(p) for p in prepared] == [AcceptedEvent, Refused, AcceptedEvent]
    for mid, item in enumerate(prepared, start=1):
        writer.submit(Delivery(item, mid, 1, connection=1))

    writer.start()
    wait_until(lambda: steps.of("puback"), 5, "the PUBACKs")
    writer.stop()

    assert steps.of("puback") == [([1, 2, 3], 2)]
    assert [ids for _, ids, _ in steps.of("ack")] == [["evt-gate-01-0001", "evt-gate-01-0002"]]
    assert store.dead_letter_counts() == {"not_json": 1}
