"""The collector against a real Mosquitto and a real SQLite file; a paho client plays the gate."""

from __future__ import annotations

import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gatescan.testing.broker import LocalBroker
from gatescan.testing.collector_process import CollectorProcess as FaultCollector
from gatescan.testing.samples import sample_event
from protocol.messages import (
    MAX_MESSAGE_BYTES,
    Ack,
    Event,
    Rejection,
    Status,
    Telemetry,
    parse_message,
)
from protocol.topics import Topic, device_topic
from server.collector.failpoints import BEFORE_COMMIT
from server.collector.limits import GateLimits
from server.collector.service import Collector, MqttClient
from server.store.database import Store
from tests.support.cli import run_gatescan
from tests.support.paths import PROJECT_ROOT

DEVICE = "gate-01"
TIMEOUT = 5.0

# A collector in its own process, so that the test can kill it with SIGKILL.
COLLECTOR_PROCESS = """
import logging, sys, threading
from server.collector.service import Collector
from server.store.database import Store
logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="%(name)s %(message)s")
collector = Collector(
    broker_url=sys.argv[2], store=Store(sys.argv[1], busy_timeout_ms=60_000), client_id=sys.argv[3]
)
collector.start()
print("subscribed" if collector.wait_until_subscribed(10) else "not subscribed", flush=True)
threading.Event().wait()
"""


def wait_for(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Poll a condition until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def make_event(event_id: str, device_id: str = DEVICE, **fields: Any) -> Event:
    defaults: dict[str, Any] = {
        "site_id": "",
        "ts": datetime(2025, 3, 1, 1, 0, tzinfo=UTC),
        "subject_id": "001203004567",
        "subject_name": "Phạm Thị Hồng Nhung",
        "code_sha256": "ef" * 32,
        "code_length": 0,
    }
    return sample_event(event_id=event_id, device_id=device_id, **{**defaults, **fields})


class Gate:
    """A gate's MQTT side, reduced to what the tests need: publish, and collect the acks."""

    def __init__(self, broker: LocalBroker, device_id: str = DEVICE) -> None:
        self.device_id = device_id
        self._acks: list[Ack] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"test-{device_id}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_args: self._subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(device_topic(device_id, Topic.ACK), qos=1)
        assert self._subscribed.wait(TIMEOUT), "the gate's ack subscription was not granted"

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._acks.append(parse_message(Topic.ACK, bytes(message.payload)))

    def publish(self, kind: Topic, payload: bytes, *, retain: bool = False) -> None:
        """Publish and wait for the broker's PUBACK (not the collector's ack)."""
        topic = device_topic(self.device_id, kind)
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(TIMEOUT)

    def send(self, event: Event) -> None:
        self.publish(Topic.EVENTS, event.to_json())

    def acks(self) -> list[Ack]:
        with self._lock:
            return list(self._acks)

    def acked_ids(self) -> list[str]:
        return [event_id for ack in self.acks() for event_id in ack.event_ids]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "gatescan.db")


@pytest.fixture(params=list(MqttClient))
def start_collector(
    broker: LocalBroker, store: Store, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Collector]]:
    """Every collector test runs on both MQTT clients: the tuned one and stock paho."""
    running: list[Collector] = []

    def start(**options: Any) -> Collector:
        options = {
            "broker_url": broker.url,
            "store": store,
            "mqtt_client": request.param,
            **options,
        }
        collector = Collector(**options)
        collector.start()
        running.append(collector)
        assert collector.wait_until_subscribed(TIMEOUT), "the collector did not subscribe"
        return collector

    yield start
    for collector in running:
        collector.stop()


@pytest.fixture
def gate(broker: LocalBroker) -> Iterator[Gate]:
    running = Gate(broker)
    yield running
    running.close()


def test_event_is_stored_once_and_acked_by_id(
    start_collector: Callable[..., Collector], gate: Gate, store: Store
) -> None:
    collector = start_collector()

    gate.send(make_event("evt-00000001"))

    wait_for(lambda: gate.acked_ids() == ["evt-00000001"], "the ack")
    assert [entry.event.event_id for entry in store.entries()] == ["evt-00000001"]
    assert (collector.counters.received, collector.counters.stored) == (1, 1)


def test_vietnamese_subject_name_is_stored_exactly(
    start_collector: Callable[..., Collector], gate: Gate, store: Store
) -> None:
    start_collector()
    event = make_event("evt-00000001", subject_name="Đặng Thị Ngọc Hân", site_id="Bến xe Mỹ Đình")

    gate.send(event)

    wait_for(lambda: store.count_entries() == 1, "the stored event")
    [stored] = store.entries()
    assert stored.event.subject_name == "Đặng Thị Ngọc Hân"
    assert stored.event == event


def test_event_resent_after_its_ack_is_stored_once_and_acked_each_time(
    start_collector: Callable[..., Collector], gate: Gate, store: Store
) -> None:
    collector = start_collector()
    event = make_event("evt-00000001")

    for sent in range(1, 4):  # a gate resends what it has not heard an ack for
        gate.send(event)
        wait_for(lambda sent=sent: len(gate.acks()) == sent, f"ack number {sent}")

    assert gate.acked_ids() == ["evt-00000001"] * 3
    assert store.count_entries() == 1
    assert (collector.counters.stored, collector.counters.duplicates) == (1, 2)


def test_an_erased_subjects_event_resent_by_a_gate_is_acked_and_not_stored_again(
    start_collector: Callable[..., Collector], gate: Gate, store: Store
) -> None:
    collector = start_collector()
    event = make_event("evt-00000001")
    gate.send(event)
    wait_for(lambda: gate.acked_ids() == ["evt-00000001"], "the first ack")

    # `gatescan person erase` from the command line, as an admin runs it, while the collector runs.
    done = run_gatescan(
        ["person", "erase", event.subject_id, "--yes", "--db", str(store.url.database)]
    )
    assert done.returncode == 0, done.stderr
    assert store.count_entries() == 0

    # The gate did not hear that ack (say) and resends it; it also had a later one in its outbox.
    later = make_event("evt-00000002", seq=2)
    someone_else = make_event("evt-00000003", seq=3, subject_id="079203001234")
    for sent in (event, later, someone_else):
        gate.send(sent)
    wanted = ["evt-00000001", "evt-00000001", "evt-00000002", "evt-00000003"]
    wait_for(lambda: sorted(gate.acked_ids()) == wanted, "the acks of all three")

    assert [e.event_id for e in store.entries()] == ["evt-00000003"]
    assert all(not ack.rejected for ack in gate.acks())
    assert store.dead_letter_count() == 0  # no dead letter keeps the erased person's payload
    assert (collector.counters.erased, collector.counters.stored) == (2, 2)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not_json"),
        (make_event("evt-bad00001").to_json().replace(b'"seq":1', b'"seq":"one"'), "schema"),
        (make_event("evt-bad00001", device_id="gate-99").to_json(), "device_mismatch"),
        (b"[" + b" " * MAX_MESSAGE_BYTES + b"]", "too_large"),
        (b"\xff\xfe binary", "not_json"),
    ],
    ids=["invalid-json", "wrong-types", "device-mismatch", "oversized", "not-utf8"],
)
def test_malformed_event_is_dead_lettered_and_a_valid_one_after_it_is_stored(
    start_collector: Callable[..., Collector],
    gate: Gate,
    store: Store,
    payload: bytes,
    reason: str,
) -> None:
    collector = start_collector()

    gate.publish(Topic.EVENTS, payload)
    gate.send(make_event("evt-good0001"))

    wait_for(lambda: gate.acked_ids() == ["evt-good0001"], "the ack of the valid event")
    [letter] = store.dead_letters()
    assert letter.reason == reason
    assert letter.topic == device_topic(DEVICE, Topic.EVENTS)
    assert letter.payload_size == len(payload)
    assert letter.payload == payload[: len(letter.payload)]
    assert [entry.event.event_id for entry in store.entries()] == ["evt-good0001"]
    assert collector.counters.dead_lettered == 1


def test_status_and_telemetry_are_recorded_for_the_device(
    broker: LocalBroker, start_collector: Callable[..., Collector], gate: Gate, store: Store
) -> None:
    now = datetime.now(UTC)
    status = Status(state="online", ts=now, version="0.3.1", boot_id="boot-1", faults=["camera"])
    # Retained and published before the collector runs: it learns it when it subscribes.
    gate.publish(Topic.STATUS, status.to_json(), retain=True)
    start_collector()
    telemetry = Telemetry(
        ts=now,
        uptime_s=61.0,
        fps=15.0,
        decode_ms=4.2,
        outbox_depth=2,
        clock_synced=True,
        version="0.3.1",
    )

    gate.publish(Topic.TELEMETRY, telemetry.to_json())

    wait_for(lambda: [d.telemetry_at is not None for d in store.devices()] == [True], "telemetry")
    [device] = store.devices()
    assert (device.device_id, device.state, device.version) == (DEVICE, "online", "0.3.1")
    assert device.faults == ["camera"]
    assert device.telemetry is not None
    assert device.telemetry["outbox_depth"] == 2


def test_invalid_status_is_dead_lettered_and_changes_no_device(
    start_collector: Callable[..., Collector], gate: Gate, store: Store
) -> None:
    start_collector()

    gate.publish(Topic.STATUS, b'{"state": "sleeping"}')

    wait_for(lambda: store.dead_letter_count() == 1, "the dead letter")
    assert store.dead_letters()[0].reason == "schema"
    assert store.devices() == []


def test_events_published_while_the_collector_is_down_are_stored_when_it_returns(
    start_collector: Callable[..., Collector], gate: Gate, store: Store
) -> None:
    first = start_collector(client_id="collector-persistent")
    first.stop()  # its session, with the subscriptions, stays on the broker
    events = [make_event(f"evt-queued{n:02d}", seq=n) for n in range(3)]

    for event in events:
        gate.send(event)
    assert store.count_entries() == 0

    start_collector(client_id="collector-persistent")
    wait_for(lambda: len(gate.acked_ids()) == 3, "acks of the queued events")
    assert sorted(gate.acked_ids()) == [event.event_id for event in events]
    assert [entry.event for entry in store.entries()] == events


def test_event_whose_commit_fails_is_not_acked_until_resent(
    start_collector: Callable[..., Collector], gate: Gate, tmp_path: Path
) -> None:
    path = tmp_path / "locked.db"
    store = Store(path, busy_timeout_ms=50)
    collector = start_collector(store=store)
    event = make_event("evt-00000001")
    # Another writer holds the database's write lock: the commit (and the dead letter) fail.
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")

    gate.send(event)
    wait_for(lambda: collector.counters.errors == 1, "the failed commit")
    blocker.execute("ROLLBACK")
    blocker.close()
    gate.send(event)  # the gate resends what was not acked

    wait_for(lambda: store.count_entries() == 1, "the stored resend")
    wait_for(lambda: gate.acks() != [], "the ack")
    # Acks leave in order, so an ack for the failed attempt would have arrived first.
    assert [ack.event_ids for ack in gate.acks()] == [["evt-00000001"]]


def test_message_from_an_invalid_device_id_is_dead_lettered_as_bad_topic(
    start_collector: Callable[..., Collector], gate: Gate, store: Store
) -> None:
    start_collector()
    topic = "gatescan/v1/devices/bad!id/events"  # '+' matches it; our device ids do not

    gate.client.publish(topic, make_event("evt-00000001").to_json(), qos=1).wait_for_publish(
        TIMEOUT
    )

    wait_for(lambda: store.dead_letter_count() == 1, "the dead letter")
    [letter] = store.dead_letters()
    assert (letter.topic, letter.reason) == (topic, "bad_topic")
    assert store.count_entries() == 0


@pytest.mark.parametrize("url", ["http://127.0.0.1:1883", "mqtt://", "mqtt://host:99999"])
def test_collector_refuses_a_broker_url_it_cannot_use(store: Store, url: str) -> None:
    with pytest.raises(ValueError, match="broker URL"):
        Collector(broker_url=url, store=store)


class CollectorProcess:
    """`python -c COLLECTOR_PROCESS` with its output lines readable against a deadline."""

    def __init__(self, db: Path, broker: LocalBroker, client_id: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", COLLECTOR_PROCESS, str(db), broker.url, client_id],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read_lines, daemon=True).start()

    def _read_lines(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)

    def wait_for_line(self, text: str) -> None:
        deadline = time.monotonic() + 3 * TIMEOUT  # a cold interpreter imports slowly
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                if text in self._lines.get(timeout=remaining):
                    return
            except queue.Empty:
                break
        raise AssertionError(f"the collector process never printed {text!r}")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def test_collector_killed_before_its_commit_gets_the_event_again_from_the_broker(
    broker: LocalBroker,
    start_collector: Callable[..., Collector],
    gate: Gate,
    store: Store,
    tmp_path: Path,
) -> None:
    db = tmp_path / "gatescan.db"
    doomed = CollectorProcess(db, broker, client_id="collector-killed")
    try:
        doomed.wait_for_line("subscribed")
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the commit now waits: the kill lands before it
        gate.send(make_event("evt-00000001"))
        doomed.wait_for_line("received 1 events message")
    finally:
        doomed.kill()
    blocker.execute("ROLLBACK")
    blocker.close()

    # No PUBACK was sent, so the broker redelivers to the same session: the gate sends nothing.
    start_collector(client_id="collector-killed")

    wait_for(lambda: gate.acked_ids() == ["evt-00000001"], "the ack of the redelivered event")
    assert store.count_entries() == 1


def test_collector_stamps_its_own_received_at_and_keeps_a_gates_order_despite_its_clock(
    start_collector: Callable[..., Collector], gate: Gate, store: Store
) -> None:
    collector_now = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    start_collector(clock=lambda: collector_now)
    gate_clock = datetime(2001, 1, 1, tzinfo=UTC)  # a Pi after a power cut, before NTP
    events = [
        make_event(
            f"evt-unsync{seq:02d}",
            seq=seq,
            ts=gate_clock - timedelta(seconds=seq),
            clock_synced=False,
        )
        for seq in range(1, 6)
    ]

    for event in events:
        gate.send(event)

    wait_for(lambda: store.count_entries() == 5, "the five events")
    in_gate_order = list(store.device_events(DEVICE))
    assert [entry.event for entry in in_gate_order] == events  # by seq, though ts runs back
    assert {entry.received_at for entry in in_gate_order} == {collector_now}


def test_dead_letters_are_counted_by_reason_in_the_store_and_the_counters(
    start_collector: Callable[..., Collector], gate: Gate, store: Store
) -> None:
    collector = start_collector()
    markup_name = (
        make_event("evt-bad00001").to_json().replace(b'"subject_name":"', b'"subject_name":"<b>')
    )
    payloads = [b"{", b"[]", b"[]", markup_name]

    for payload in payloads:
        gate.publish(Topic.EVENTS, payload)

    wait_for(lambda: store.dead_letter_count() == 4, "four dead letters")
    assert store.dead_letter_counts() == {"not_json": 1, "not_object": 2, "schema": 1}
    assert collector.counters.dead_letter_reasons == store.dead_letter_counts()


def too_large_event(event_id: str) -> bytes:
    """A future gate's event beyond the size limit: its id first, as a gate writes it."""
    padding = b"x" * MAX_MESSAGE_BYTES
    return make_event(event_id).to_json()[:-1] + b',"padding":"' + padding + b'"}'


TOO_LARGE = too_large_event("evt-huge0001")


@pytest.mark.parametrize(
    ("event_id", "payload", "reason", "detail_start"),
    [
        (
            "evt-moved001",
            make_event("evt-moved001", device_id="gate-99").to_json(),  # device_id changed
            "device_mismatch",
            "topic names 'gate-01', payload names 'gate-99'",
        ),
        (
            "evt-newer001",
            make_event("evt-newer001").to_json().replace(b'"in"', b'"sideways"'),  # newer gate
            "schema",
            "direction: ",
        ),
        ("evt-huge0001", TOO_LARGE, "too_large", f"{len(TOO_LARGE)} bytes > "),
        (
            "evt-year0001",
            make_event(
                "evt-year0001", ts=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
            ).to_json(),  # no UTC time: was an `error` dead letter, never answered
            "bad_time",
            "ts has no UTC time",
        ),
        (
            "evt-year9999",
            make_event("evt-year9999", ts=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)).to_json(),
            "bad_time",
            "ts 9999-12-31T23:59:59Z from a synchronised clock",
        ),
    ],
    ids=["device-mismatch", "schema", "too-large", "year-0", "year-9999-synced"],
)
def test_refused_event_is_acked_as_rejected_to_the_topics_gate_and_dead_lettered_once(
    broker: LocalBroker,
    start_collector: Callable[..., Collector],
    gate: Gate,
    store: Store,
    event_id: str,
    payload: bytes,
    reason: str,
    detail_start: str,
) -> None:
    collector = start_collector()
    named_in_payload = Gate(broker, "gate-99")
    try:
        for _ in range(3):  # sent, then resent twice: each time the gate hears why
            gate.publish(Topic.EVENTS, payload)
        gate.send(make_event("evt-good0001"))

        wait_for(lambda: gate.acked_ids() == ["evt-good0001"], "the ack of the valid event")
        assert named_in_payload.acks() == []  # only the topic's gate is ever answered
    finally:
        named_in_payload.close()
    rejections = [rejection for ack in gate.acks() for rejection in ack.rejected]
    assert [(r.event_id, r.reason) for r in rejections] == [(event_id, reason)] * 3
    assert rejections[0].detail.startswith(detail_start)
    [letter] = store.dead_letters()
    assert (letter.reason, letter.repeats) == (reason, 2)
    assert store.dead_letter_count() == 3
    assert (collector.counters.dead_lettered, collector.counters.rejected) == (3, 3)


def test_refused_payload_that_names_no_event_gets_no_rejection(
    start_collector: Callable[..., Collector], gate: Gate, store: Store
) -> None:
    start_collector()

    gate.publish(Topic.EVENTS, b'{"event_id": "evt\\n0001", "seq": 1}')
    gate.publish(Topic.EVENTS, b"{not json")
    gate.send(make_event("evt-good0001"))

    wait_for(lambda: gate.acked_ids() == ["evt-good0001"], "the ack of the valid event")
    assert [ack.rejected for ack in gate.acks()] == [[]]
    assert store.dead_letter_counts() == {"not_json": 1, "schema": 1}


# --- batches: many messages per commit, one ack per gate ---------------------------------------

BATCH_GATES = ("gate-11", "gate-12", "gate-13")


@contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Another connection holds the database's write lock: a commit waits until the block ends."""
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


@pytest.fixture
def batch_gates(broker: LocalBroker) -> Iterator[dict[str, Gate]]:
    running = {device_id: Gate(broker, device_id) for device_id in BATCH_GATES}
    yield running
    for one in running.values():
        one.close()


def queued_behind_a_commit(
    collector: Collector, db: Path, plug: Gate, publish: Callable[[], int]
) -> None:
    """Publish while the collector's commit of a first event (the plug) waits for the write
    lock, and wait until all of it is queued: the writer then takes it as one batch."""
    received = collector.counters.received
    with write_lock(db):
        plug.send(make_event(f"evt-plug-{received:04d}", device_id=plug.device_id))
        wait_for(lambda: collector.counters.received == received + 1, "the plug's commit")
        count = publish()
        wait_for(lambda: collector.queued() == count, f"{count} messages queued")


def test_a_batch_from_several_gates_is_one_commit_and_each_gate_gets_one_ack_with_its_ids(
    start_collector: Callable[..., Collector], batch_gates: dict[str, Gate], tmp_path: Path
) -> None:
    db = tmp_path / "batch.db"
    store = Store(db, busy_timeout_ms=30_000)
    collector = start_collector(store=store)
    earlier = make_event("evt-earlier1", device_id="gate-12")
    batch_gates["gate-12"].send(earlier)
    wait_for(lambda: batch_gates["gate-12"].acked_ids() == [earlier.event_id], "the first ack")
    events = {
        device_id: [make_event(f"evt-{device_id}-{n}", device_id=device_id) for n in range(4)]
        for device_id in BATCH_GATES
    }

    def publish() -> int:
        for n in range(4):
            for device_id, gate in batch_gates.items():
                gate.send(events[device_id][n])
        batch_gates["gate-12"].send(events["gate-12"][1])  # a resend within the batch
        batch_gates["gate-12"].send(earlier)  # a resend of an event stored by an earlier batch
        return 14

    queued_behind_a_commit(collector, db, batch_gates["gate-11"], publish)
    # Each gate's ack travels on its own topic: they may arrive in any order.
    wait_for(
        lambda: [len(gate.acks()) for gate in batch_gates.values()] == [2, 2, 1], "the batch's acks"
    )

    assert collector.counters.batches == 3  # the earlier event, the plug, the batch
    assert store.count_entries() == 1 + 1 + 12
    assert (collector.counters.stored, collector.counters.duplicates) == (14, 2)
    last_acks = {device_id: gate.acks()[-1] for device_id, gate in batch_gates.items()}
    assert last_acks["gate-11"].event_ids == [e.event_id for e in events["gate-11"]]
    assert last_acks["gate-12"].event_ids == [
        *(e.event_id for e in events["gate-12"]),
        earlier.event_id,
    ]  # each id once, though sent twice
    assert last_acks["gate-13"].event_ids == [e.event_id for e in events["gate-13"]]
    assert [len(gate.acks()) for gate in batch_gates.values()] == [2, 2, 1]
    stored = {entry.event_id: entry.event for entry in store.entries()}
    assert all(stored[e.event_id] == e for batch in events.values() for e in batch)


def test_a_malformed_message_inside_a_batch_is_dead_lettered_and_rejected_and_the_rest_stored(
    start_collector: Callable[..., Collector], batch_gates: dict[str, Gate], tmp_path: Path
) -> None:
    db = tmp_path / "batch.db"
    store = Store(db, busy_timeout_ms=30_000)
    collector = start_collector(store=store)
    gate, other = batch_gates["gate-11"], batch_gates["gate-12"]
    before = make_event("evt-valid-01", device_id="gate-11")
    refused = make_event("evt-refused1", device_id="gate-11").to_json().replace(b'"in"', b'"up"')
    after = make_event("evt-valid-02", device_id="gate-11")
    elsewhere = make_event("evt-valid-03", device_id="gate-12")

    def publish() -> int:
        gate.send(before)
        gate.publish(Topic.EVENTS, refused)  # names its event_id: answered as rejected
        gate.publish(Topic.EVENTS, b"{not json")  # names none: only dead-lettered
        other.send(elsewhere)
        gate.send(after)
        return 5

    queued_behind_a_commit(collector, db, batch_gates["gate-13"], publish)
    wait_for(lambda: gate.acks() != [] and other.acks() != [], "the batch's acks")

    assert collector.counters.batches == 2  # the plug, then the batch of five
    [ack] = gate.acks()
    assert ack.event_ids == ["evt-valid-01", "evt-valid-02"]
    assert [(r.event_id, r.reason) for r in ack.rejected] == [("evt-refused1", "schema")]
    assert other.acked_ids() == ["evt-valid-03"]
    assert store.dead_letter_counts() == {"not_json": 1, "schema": 1}
    stored_ids = {entry.event_id for entry in store.entries()}
    assert stored_ids == {"evt-plug-0000", "evt-valid-01", "evt-valid-02", "evt-valid-03"}


def test_a_collector_killed_mid_stream_had_pubacked_only_what_it_had_committed(
    broker: LocalBroker, batch_gates: dict[str, Gate], tmp_path: Path
) -> None:
    db = tmp_path / "killed.db"
    store = Store(db)  # the tables exist before the collector starts: the test reads them
    events = [
        make_event(f"evt-stream{n:02d}", device_id=BATCH_GATES[n % 3], seq=n) for n in range(12)
    ]

    def collector(failpoints: str | None = None) -> FaultCollector:
        return FaultCollector(
            broker_url=broker.url,
            db_url=f"sqlite:///{db}",
            log_path=tmp_path / "collector.log",
            client_id="collector-mid-stream",
            failpoints=failpoints,
            log_level="debug",
        ).wait_until_subscribed()

    # Batches are cut so that the 5th events message is alone in its batch (failpoints.py):
    # the plug, then a batch of three from three gates, then the 5th is killed before its commit.
    doomed = collector(failpoints=f"{BEFORE_COMMIT}=kill:5")
    with write_lock(db):
        batch_gates[events[0].device_id].send(events[0])
        doomed.wait_for_log("received 1 events message")
        for event in events[1:]:
            batch_gates[event.device_id].send(event)
    assert doomed.wait_for_exit() == -signal.SIGKILL
    assert "received 3 events message(s)" in doomed.log_text()
    assert {e.event_id for e in store.entries()} == {e.event_id for e in events[:4]}
    acked_before = {i for gate in batch_gates.values() for i in gate.acked_ids()}
    assert acked_before <= {e.event_id for e in events[:4]}

    survivor = collector()
    try:
        # The test's gates never resend: the broker redelivers every message no PUBACK settled.
        every_id = {e.event_id for e in events}

        def acked() -> set[str]:
            return {i for gate in batch_gates.values() for i in gate.acked_ids()}

        wait_for(lambda: acked() == every_id, "acks of all twelve", timeout=30)
    finally:
        survivor.stop()
    assert store.count_entries() == 12
    assert {e.event_id: e.event for e in store.entries()} == {e.event_id: e for e in events}


# --- issue 13: conflicts, per-gate limits, a flood of refused messages ---------------------------


def test_a_duplicate_event_id_with_other_content_is_a_conflict_dead_letter_answered_rejected(
    start_collector: Callable[..., Collector], gate: Gate, store: Store
) -> None:
    collector = start_collector()
    first = make_event("evt-00000001")
    gate.send(first)
    wait_for(lambda: gate.acked_ids() == [first.event_id], "the first ack")
    forged = make_event(first.event_id, subject_id="001203009999", subject_name="Trần Văn Bình")

    gate.send(forged)

    wait_for(lambda: len(gate.acks()) == 2, "the answer to the conflicting event")
    answer = gate.acks()[1]
    assert answer.event_ids == []
    [rejection] = answer.rejected
    assert (rejection.event_id, rejection.reason) == (first.event_id, "conflict")
    assert rejection.detail.endswith("differs in subject_id, subject_name")  # names, no values
    assert [entry.event for entry in store.entries()] == [first]  # the stored event stands
    [letter] = store.dead_letters()
    assert (letter.reason, letter.event_id, letter.payload) == (
        "conflict",
        first.event_id,
        forged.to_json(),
    )
    assert (collector.counters.conflicts, collector.counters.duplicates) == (1, 0)
    assert collector.counters.dead_letter_reasons == {"conflict": 1}

    gate.send(first)  # an identical resend stays a silent ack

    wait_for(lambda: len(gate.acks()) == 3, "the ack of the identical resend")
    assert (gate.acks()[2].event_ids, gate.acks()[2].rejected) == ([first.event_id], [])
    assert (collector.counters.conflicts, collector.counters.duplicates) == (1, 1)
    assert store.dead_letter_count() == 1


class FrozenMonotonic:
    """The limiter's clock: still until the test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_gate_over_its_limits_is_dropped_unanswered_and_its_resends_are_stored(
    broker: LocalBroker, start_collector: Callable[..., Collector], gate: Gate, store: Store
) -> None:
    clock = FrozenMonotonic()
    # 0.5 messages a second, so a burst (10 s) of 5: the clock stands still until moved.
    limits = GateLimits(max_messages_per_second=0.5, max_bytes_per_minute=0)
    collector = start_collector(limits=limits, limits_clock=clock)
    other = Gate(broker, "gate-02")
    try:
        events = [make_event(f"evt-limited{n:02d}", seq=n) for n in range(8)]
        for event in events:
            gate.send(event)
        other.send(make_event("evt-other-01", device_id="gate-02"))

        wait_for(lambda: collector.counters.rate_limited == 3, "three messages over the limit")
        wait_for(lambda: other.acked_ids() == ["evt-other-01"], "the other gate's ack")
        wait_for(lambda: len(gate.acked_ids()) == 5, "the acks of the first five")
        assert gate.acked_ids() == [event.event_id for event in events[:5]]
        assert [rejection for ack in gate.acks() for rejection in ack.rejected] == []
        assert store.dead_letter_count() == 0  # dropped unread: no row, no answer
        assert collector.counters.rate_limited_gates == {DEVICE: 3}

        clock.now += 10.0  # the gate's resend_after: its bucket has filled again
        for event in events[5:]:  # the gate resends what was not acked
            gate.send(event)

        wait_for(lambda: len(gate.acked_ids()) == 8, "the acks of the resent three")
    finally:
        other.close()
    assert sorted(gate.acked_ids()) == [event.event_id for event in events]
    assert store.count_entries() == 9
    assert collector.counters.rate_limited == 3


def database_bytes(store: Store) -> int:
    """The database's size as its pages (the WAL's included): what a checkpoint leaves."""
    with store.engine.connect() as conn:
        pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar() or 0)
        page_size = int(conn.exec_driver_sql("PRAGMA page_size").scalar() or 0)
    return pages * page_size


FLOOD_MESSAGES = 300


def sixty_kb_refused_event(n: int) -> bytes:
    """A hostile gate's 60 KB message: an event whose code_text is far too long (schema), each
    one different (no repeat to count), full of what looks like personal data."""
    event = make_event(f"evt-flood-{n:04d}", seq=n).to_json()
    return event[:-1] + b',"code_text":"' + b"Nguyen Van An 079190000001 " * 2270 + b'"}'


@pytest.mark.parametrize(
    "limits", [GateLimits(), GateLimits(0, 0)], ids=["default-limits", "no-limits"]
)
def test_a_flood_of_refused_60_kb_messages_barely_grows_the_database_and_others_flow(
    broker: LocalBroker,
    start_collector: Callable[..., Collector],
    store: Store,
    limits: GateLimits,
) -> None:
    collector = start_collector(limits=limits)
    hostile, honest = Gate(broker, "gate-hostile"), Gate(broker, "gate-honest")
    try:
        honest.send(make_event("evt-honest-00", device_id="gate-honest"))
        wait_for(lambda: honest.acked_ids() == ["evt-honest-00"], "the honest gate's first ack")
        before = database_bytes(store)
        flood = [sixty_kb_refused_event(n) for n in range(FLOOD_MESSAGES)]
        assert all(61_000 < len(payload) < 65_536 for payload in flood)  # passes the broker
        honest_ids = ["evt-honest-00"]

        for n, payload in enumerate(flood, start=1):
            hostile.publish(Topic.EVENTS, payload)
            if n % 50 == 0:  # the honest gate scans on during the flood
                honest_ids.append(f"evt-honest-{n // 50:02d}")
                honest.send(make_event(honest_ids[-1], device_id="gate-honest", seq=n))

        counters = collector.counters
        wait_for(
            lambda: counters.dead_lettered + counters.rate_limited == FLOOD_MESSAGES,
            "the whole flood handled",
            timeout=30,
        )
        honest_ids.append("evt-honest-after")
        honest.send(make_event(honest_ids[-1], device_id="gate-honest", seq=999))
        wait_for(lambda: honest.acked_ids() == honest_ids, "every honest event acked", 30)
        grown = database_bytes(store) - before

        def answered() -> list[Rejection]:
            return [rejection for ack in hostile.acks() for rejection in ack.rejected]

        # Each refusal stored is answered; a message dropped over the limit is not (yet).
        wait_for(lambda: len(answered()) == counters.dead_lettered, "the rejections")
        assert {rejection.reason for rejection in answered()} == {"schema"}
    finally:
        hostile.close()
        honest.close()
    print(
        f"\n{FLOOD_MESSAGES} refused 60 KB messages ({limits}): database grew by {grown} bytes;"
        f" {counters.dead_lettered} dead-lettered, {counters.rate_limited} dropped over the limit"
    )
    assert grown < 2 * 1024 * 1024  # the whole payloads would be 18 MB
    assert {entry.event_id for entry in store.entries()} == set(honest_ids)
    assert store.dead_letter_count() == counters.dead_lettered
    assert all(len(letter.payload) == 4096 for letter in store.dead_letters(limit=1000))
    if limits.off:
        assert (counters.dead_lettered, counters.rate_limited) == (FLOOD_MESSAGES, 0)
    else:
        # 32 MiB a minute, 10 s of it at once: about 90 of the 60 KB messages, then 9 a second.
        assert counters.rate_limited_gates.keys() == {"gate-hostile"}
        assert counters.rate_limited > FLOOD_MESSAGES / 2
