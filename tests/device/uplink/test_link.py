"""The uplink against a real Mosquitto and a real journal on disk, with a plain paho client in the
collector's seat: it watches the gate's topics and acks events (or holds its acks back)."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from device.journal.journal import Journal
from device.uplink.link import BROKER_REFUSALS_BEFORE_REJECTING, IN_FLIGHT_WINDOW, Uplink
from device.verdict.events import EventDraft
from gatescan.testing.broker import LocalBroker
from protocol.messages import Ack, Event, Rejection, Status, Telemetry
from protocol.topics import Topic, device_topic
from protocol.verdicts import CredentialType, Direction, Reason, VerdictStatus
from server.collector.service import Collector as RealCollector
from server.store.database import Store
from tests.support import waiting
from tests.support.paths import PROJECT_ROOT

DEVICE_ID = "gate-1"
BOOT_ID = "boot-1"


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    waiting.wait_until(condition, timeout, what, interval=0.01)


def assert_stays(condition: Callable[[], bool], duration: float, what: str) -> None:
    """Watch a condition that must hold for a while (a thing that must NOT happen)."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        assert condition(), what
        time.sleep(0.01)


def raw_draft(device_id: str = DEVICE_ID, code_text: str | None = None) -> EventDraft:
    event_id = uuid.uuid4().hex
    digest = hashlib.sha256(f"code-{event_id}".encode()).hexdigest()
    return EventDraft(
        event_id=event_id,
        device_id=device_id,
        boot_id=BOOT_ID,
        ts=datetime.now(UTC),
        clock_synced=True,
        direction=Direction.IN,
        status=VerdictStatus.RECORDED,
        reason=Reason.OK,
        credential_type=CredentialType.RAW,
        subject_id=digest,
        code_sha256=digest,
        code_text=code_text,
    )


def record_events(journal: Journal, count: int, device_id: str = DEVICE_ID) -> list[Event]:
    return [journal.record(raw_draft(device_id)) for _ in range(count)]


def pending_events(journal: Journal) -> list[Event]:
    return [entry.event() for entry in journal.pending()]


class Collector:
    """A plain paho client playing the collector for one gate."""

    def __init__(self, broker: LocalBroker, *, acking: bool) -> None:
        self.acking = acking
        self.events: list[tuple[float, Event]] = []
        self.payloads: list[bytes] = []  # of the events, as they came
        self.statuses: list[tuple[float, Status, bool]] = []  # (seen at, status, retained)
        self.telemetry: list[Telemetry] = []
        self._broker = broker
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"collector-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self._client.reconnect_delay_set(1, 1)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def start(self) -> Collector:
        self._client.connect(self._broker.host, self._broker.port, keepalive=5)
        self._client.loop_start()
        assert self._subscribed.wait(5), "the collector could not subscribe"
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def ack(self, event_ids: list[str]) -> None:
        self.send_ack_payload(Ack(event_ids=event_ids).to_json())

    def send_ack_payload(self, payload: bytes) -> None:
        self._client.publish(device_topic(DEVICE_ID, Topic.ACK), payload, qos=1)

    def seen_ids(self) -> list[str]:
        return [event.event_id for _, event in list(self.events)]

    def latest_status(self) -> Status | None:
        statuses = list(self.statuses)
        return statuses[-1][1] if statuses else None

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        kinds = (Topic.EVENTS, Topic.STATUS, Topic.TELEMETRY)
        client.subscribe([(device_topic(DEVICE_ID, kind), 1) for kind in kinds])

    def _on_subscribe(self, *_: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        seen_at = time.monotonic()
        kind = message.topic.rsplit("/", 1)[1]
        if kind == Topic.EVENTS:
            self.payloads.append(bytes(message.payload))
            event = Event.model_validate_json(message.payload)
            self.events.append((seen_at, event))
            if self.acking:
                self.ack([event.event_id])
        elif kind == Topic.STATUS:
            status = Status.model_validate_json(message.payload)
            self.statuses.append((seen_at, status, bool(message.retain)))
        elif kind == Topic.TELEMETRY:
            self.telemetry.append(Telemetry.model_validate_json(message.payload))


MakeUplink = Callable[..., Uplink]
MakeCollector = Callable[..., Collector]


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "gate") as opened:
        yield opened


@pytest.fixture
def uplinks(broker: LocalBroker, journal: Journal) -> Iterator[Callable[..., Uplink]]:
    made: list[Uplink] = []

    def make(
        *,
        resend_after: float = 10.0,
        broker_url: str | None = None,
        on_connection_change: Callable[[bool], None] | None = None,
    ) -> Uplink:
        uplink = Uplink(
            device_id=DEVICE_ID,
            broker_url=broker_url or broker.url,
            journal=journal,
            version="1.2.3",
            boot_id=BOOT_ID,
            resend_after=resend_after,
            on_connection_change=on_connection_change,
        )
        made.append(uplink)
        uplink.start()
        return uplink

    yield make
    for uplink in made:
        uplink.stop(timeout=2)


@pytest.fixture
def collectors(broker: LocalBroker) -> Iterator[Callable[..., Collector]]:
    made: list[Collector] = []

    def make(*, acking: bool) -> Collector:
        collector = Collector(broker, acking=acking).start()
        made.append(collector)
        return collector

    yield make
    for collector in made:
        collector.stop()


def latest_status(collector: Collector) -> Status:
    status = collector.latest_status()
    assert status is not None, "no status seen"
    return status


def online(uplink: Uplink) -> Uplink:
    wait_until(lambda: uplink.connected, 5, "the uplink to connect")
    return uplink


def test_status_is_retained_online_after_connect(
    uplinks: MakeUplink, collectors: MakeCollector
) -> None:
    online(uplinks())

    fresh = collectors(acking=False)  # subscribes after the gate connected: sees the retained one

    # The retained one; the gate may also publish its status again live meanwhile (a fault or
    # policy change at start), which a subscriber already there gets without the retain flag.
    def retained_ones() -> list[tuple[object, Status, bool]]:
        return [entry for entry in fresh.statuses if entry[2]]

    wait_until(lambda: retained_ones() != [], 5, "the retained status")
    _, status, _ = retained_ones()[-1]
    assert (status.state, status.version, status.boot_id, status.faults) == (
        "online",
        "1.2.3",
        BOOT_ID,
        [],
    )


def test_the_gates_socket_sends_each_packet_at_once(uplinks: MakeUplink) -> None:
    uplink = online(uplinks())

    sock = uplink._client.socket()
    assert isinstance(sock, socket.socket)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_set_faults_republishes_the_retained_status(
    uplinks: MakeUplink, collectors: MakeCollector
) -> None:
    watcher = collectors(acking=False)
    uplink = online(uplinks())

    uplink.set_faults(["camera_stalled"])

    wait_until(
        lambda: (
            (status := watcher.latest_status()) is not None and status.faults == ["camera_stalled"]
        ),
        5,
        "a status with the fault",
    )
    assert latest_status(watcher).state == "online"


def test_faults_set_before_connecting_are_in_the_first_online_status(
    broker: LocalBroker, collectors: MakeCollector, journal: Journal
) -> None:
    watcher = collectors(acking=False)
    uplink = Uplink(
        device_id=DEVICE_ID, broker_url=broker.url, journal=journal, version="1", boot_id=BOOT_ID
    )
    uplink.set_faults(["clock_not_synced"])

    uplink.start()
    try:
        wait_until(lambda: watcher.latest_status() is not None, 5, "the online status")
    finally:
        uplink.stop(timeout=2)
    first = watcher.statuses[0][1]
    assert (first.state, first.faults) == ("online", ["clock_not_synced"])


def test_event_leaves_outbox_only_after_ack(
    uplinks: MakeUplink, collectors: MakeCollector, journal: Journal
) -> None:
    collector = collectors(acking=False)
    uplink = online(uplinks())

    [event] = record_events(journal, 1)
    uplink.event_recorded()

    wait_until(lambda: collector.seen_ids() == [event.event_id], 5, "the event on .../events")
    assert collector.events[0][1] == event
    assert_stays(lambda: journal.outbox_depth() == 1, 0.3, "the broker's PUBACK emptied the outbox")

    collector.ack([event.event_id])

    wait_until(lambda: journal.outbox_depth() == 0, 5, "the ack to empty the outbox")
    assert [e.event_id for e in journal.history(event.ts.date())] == [event.event_id]


def test_the_uplink_publishes_the_journals_wire_bytes_unchanged(
    uplinks: MakeUplink, collectors: MakeCollector, journal: Journal
) -> None:
    collector = collectors(acking=False)
    uplink = online(uplinks())
    record_events(journal, 2)
    journal.record(raw_draft(code_text="Số 5, phố Huế, Hà Nội"))  # UTF-8 beyond ASCII
    journaled = journal.pending()

    uplink.event_recorded()

    wait_until(lambda: len(collector.payloads) == 3, 5, "the three events on .../events")
    assert collector.payloads == [entry.wire for entry in journaled]


def test_unacked_event_is_resent_after_timeout(
    uplinks: MakeUplink, collectors: MakeCollector, journal: Journal
) -> None:
    collector = collectors(acking=False)
    uplink = online(uplinks(resend_after=0.3))

    [event] = record_events(journal, 1)
    uplink.event_recorded()

    wait_until(lambda: len(collector.events) >= 2, 5, "the event to be sent a second time")
    (first, _), (second, resent) = collector.events[:2]
    assert resent == event
    # Not before the timeout (less up to 50 ms of delivery jitter: Nagle meets delayed ACK).
    assert 0.25 <= second - first < 1.5
    assert journal.outbox_depth() == 1

    collector.ack([event.event_id])
    wait_until(lambda: journal.outbox_depth() == 0, 5, "the ack to empty the outbox")
    sent_so_far = len(collector.events)
    assert_stays(lambda: len(collector.events) == sent_so_far, 0.8, "an acked event was resent")


def test_events_recorded_while_broker_down_are_delivered_after_it_returns(
    broker: LocalBroker, uplinks: MakeUplink, collectors: MakeCollector, journal: Journal
) -> None:
    before = collectors(acking=False)
    changes: list[bool] = []
    uplink = online(uplinks(resend_after=30, on_connection_change=changes.append))
    [unacked] = record_events(journal, 1)  # the broker took it, the collector never acked it
    uplink.event_recorded()
    wait_until(lambda: before.seen_ids() == [unacked.event_id], 5, "the first event")

    broker.stop()
    wait_until(lambda: not uplink.connected, 5, "the uplink to notice the broker is gone")
    recorded_offline = record_events(journal, 5)
    uplink.event_recorded()
    broker.start()
    after = collectors(acking=True)
    # The gate retries 1 s after losing the broker; the collector must be listening by then.
    assert not uplink.connected, "the gate came back before the collector could subscribe"

    # Well within resend_after: everything pending goes again because the link came back.
    wait_until(lambda: journal.outbox_depth() == 0, 10, "the outbox to be delivered and acked")
    expected = {event.event_id for event in [unacked, *recorded_offline]}
    assert set(after.seen_ids()) == expected
    assert changes[:3] == [True, False, True]
    fresh = collectors(acking=False)
    wait_until(lambda: fresh.latest_status() is not None, 5, "the retained status")
    assert latest_status(fresh).state == "online"


def test_clean_stop_publishes_offline(uplinks: MakeUplink, collectors: MakeCollector) -> None:
    changes: list[bool] = []
    uplink = online(uplinks(on_connection_change=changes.append))

    uplink.stop()

    assert not uplink.connected
    assert changes == [True, False]
    fresh = collectors(acking=False)

    # The retained one; the gate may also publish its status again live meanwhile (a fault or
    # policy change at start), which a subscriber already there gets without the retain flag.
    def retained_ones() -> list[tuple[object, Status, bool]]:
        return [entry for entry in fresh.statuses if entry[2]]

    wait_until(lambda: retained_ones() != [], 5, "the retained status")
    _, status, _ = retained_ones()[-1]
    assert (status.state, status.boot_id, status.version) == ("offline", BOOT_ID, "1.2.3")


def test_telemetry_is_published_while_online(
    uplinks: MakeUplink, collectors: MakeCollector
) -> None:
    collector = collectors(acking=False)
    uplink = online(uplinks())
    telemetry = Telemetry(
        ts=datetime.now(UTC),
        uptime_s=12.5,
        fps=9.8,
        decode_ms=4.2,
        outbox_depth=0,
        clock_synced=True,
        version="1.2.3",
    )

    uplink.publish_telemetry(telemetry)

    wait_until(lambda: collector.telemetry == [telemetry], 5, "the telemetry")


def test_start_and_stop_return_at_once_while_the_broker_is_unreachable(
    journal: Journal,
) -> None:
    nobody = LocalBroker()  # a free port, never started
    uplink = Uplink(
        device_id=DEVICE_ID, broker_url=nobody.url, journal=journal, version="1", boot_id=BOOT_ID
    )
    record_events(journal, 1)

    began = time.monotonic()
    uplink.start()
    uplink.event_recorded()
    uplink.publish_telemetry(
        Telemetry(
            ts=datetime.now(UTC),
            uptime_s=1,
            fps=0,
            decode_ms=0,
            outbox_depth=1,
            clock_synced=True,
            version="1",
        )
    )
    assert time.monotonic() - began < 0.1
    assert not uplink.connected

    began = time.monotonic()
    uplink.stop(timeout=1)
    assert time.monotonic() - began < 2.0
    assert journal.outbox_depth() == 1


def test_backlog_of_1000_flushes_with_bounded_inflight(
    uplinks: MakeUplink, collectors: MakeCollector, journal: Journal
) -> None:
    collector = collectors(acking=False)
    uplink = online(uplinks(resend_after=60))
    events = []
    for _ in range(1000):
        events += record_events(journal, 1)
        uplink.event_recorded()  # as the frame loop does after every record
    ids = [event.event_id for event in events]
    assert len(set(ids)) == journal.outbox_depth() == 1000

    wait_until(lambda: len(collector.events) == IN_FLIGHT_WINDOW, 5, "a full window")
    assert_stays(
        lambda: len(collector.events) == IN_FLIGHT_WINDOW and uplink.in_flight == IN_FLIGHT_WINDOW,
        0.5,
        "more than the window was published without acks",
    )
    assert collector.seen_ids() == ids[:IN_FLIGHT_WINDOW]  # oldest first

    highest_in_flight = 0

    def flushed() -> bool:
        nonlocal highest_in_flight
        highest_in_flight = max(highest_in_flight, uplink.in_flight)
        return journal.outbox_depth() == 0

    began = time.monotonic()
    collector.acking = True
    collector.ack(collector.seen_ids())
    wait_until(flushed, 30, "the backlog to flush")
    logging.getLogger(__name__).info("backlog flushed in %.2f s", time.monotonic() - began)

    assert highest_in_flight <= IN_FLIGHT_WINDOW
    assert sorted(collector.seen_ids()) == sorted(ids)  # each event sent exactly once
    assert journal.pending() == []


def test_malformed_ack_is_ignored(
    uplinks: MakeUplink,
    collectors: MakeCollector,
    journal: Journal,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="gatescan.uplink")
    collector = collectors(acking=False)
    uplink = online(uplinks())
    [event] = record_events(journal, 1)
    uplink.event_recorded()
    wait_until(lambda: collector.seen_ids() == [event.event_id], 5, "the event")
    bad_acks = [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"[1, 2]",
        b'{"event_ids": "' + event.event_id.encode() + b'"}',
        b'{"event_ids": [1, 2]}',
        b'{"event_ids": ["' + event.event_id.encode() + b'"' + b" " * 70_000 + b"]}",
    ]

    for payload in bad_acks:
        collector.send_ack_payload(payload)

    def malformed_logged() -> int:
        return sum("malformed ack" in record.getMessage() for record in caplog.records)

    wait_until(lambda: malformed_logged() == len(bad_acks), 5, "every bad ack to be logged")
    assert uplink.connected
    assert journal.outbox_depth() == 1
    collector.ack([event.event_id])  # and the link still works
    wait_until(lambda: journal.outbox_depth() == 0, 5, "a good ack to empty the outbox")


@pytest.fixture
def acl_dir() -> Iterator[Path]:
    """A directory Mosquitto can read: started as root, it drops to its own user, and pytest's
    tmp_path is private to ours."""
    with tempfile.TemporaryDirectory(prefix="gatescan-acl-") as name:
        os.chmod(name, 0o755)
        yield Path(name)


def test_publish_refused_by_the_broker_is_logged_and_the_event_stays(
    tmp_path: Path, acl_dir: Path, journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gatescan.uplink")
    acl = acl_dir / "acl"
    acl.write_text(  # the gate may say it is online and read acks, but not send events
        f"topic readwrite {device_topic(DEVICE_ID, Topic.STATUS)}\n"
        f"topic read {device_topic(DEVICE_ID, Topic.ACK)}\n"
    )
    acl.chmod(0o644)
    with LocalBroker(workdir=tmp_path / "strict", extra_config=f"acl_file {acl}\n") as strict:
        uplink = Uplink(
            device_id=DEVICE_ID, broker_url=strict.url, journal=journal, version="1", boot_id="b"
        )
        uplink.start()
        try:
            online(uplink)
            [event] = record_events(journal, 1)
            uplink.event_recorded()

            wait_until(
                lambda: any("0x87" in record.getMessage() for record in caplog.records),
                5,
                "the refusal (0x87 not authorized) to be logged",
            )
        finally:
            uplink.stop(timeout=2)
    refusal = next(
        record.getMessage() for record in caplog.records if "0x87" in record.getMessage()
    )
    assert event.event_id in refusal
    assert pending_events(journal) == [event]


def rejection_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.ERROR and "refused for good" in record.getMessage()
    ]


def test_event_the_collector_rejects_leaves_the_outbox_for_the_rejected_table(
    uplinks: MakeUplink,
    collectors: MakeCollector,
    journal: Journal,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gatescan.uplink")
    collector = collectors(acking=False)
    uplink = online(uplinks(resend_after=0.3))
    refused, kept = record_events(journal, 2)
    uplink.event_recorded()
    wait_until(lambda: len(collector.events) >= 2, 5, "both events")
    rejection = Rejection(event_id=refused.event_id, reason="schema", detail="direction: new")

    for _ in range(2):  # the collector answers each resend: the gate sets it aside once
        collector.send_ack_payload(Ack(event_ids=[], rejected=[rejection]).to_json())

    wait_until(lambda: journal.rejected_count() == 1, 5, "the event to be set aside")
    assert pending_events(journal) == [kept]
    [rejected] = journal.rejected()
    assert (rejected.event, rejected.reason, rejected.detail) == (
        refused,
        "schema",
        rejection.detail,
    )
    sends_so_far = collector.seen_ids().count(refused.event_id)
    assert_stays(
        lambda: collector.seen_ids().count(refused.event_id) == sends_so_far,
        0.8,
        "a rejected event was sent again",
    )
    [error] = rejection_errors(caplog)
    assert refused.event_id in error and "schema (direction: new)" in error
    assert uplink.in_flight == 1  # only the event still waiting for its ack


def test_150_refused_events_do_not_stop_a_valid_event_recorded_after_them(
    broker: LocalBroker, uplinks: MakeUplink, journal: Journal, tmp_path: Path
) -> None:
    # The gate's device_id was changed while its outbox held events that name the old one: the
    # collector refuses each (device_mismatch). Without rejections they filled the window.
    store = Store(tmp_path / "collector.db")
    collector = RealCollector(broker_url=broker.url, store=store)
    collector.start()
    try:
        assert collector.wait_until_subscribed(5)
        refused = record_events(journal, 150, device_id="gate-old")
        [valid] = record_events(journal, 1)
        uplink = uplinks(resend_after=60)  # no resend timer helps: only the rejections can

        wait_until(lambda: store.count_entries() == 1, 10, "the valid event to be stored")
        wait_until(lambda: journal.pending() == [], 5, "the outbox to empty")
    finally:
        collector.stop()
    assert [entry.event for entry in store.entries()] == [valid]
    assert [r.event for r in journal.rejected()] == refused
    assert {r.reason for r in journal.rejected()} == {"device_mismatch"}
    assert store.dead_letter_counts() == {"device_mismatch": 150}
    assert uplink.in_flight == 0


def test_event_the_broker_keeps_refusing_is_set_aside_as_broker_refused(
    tmp_path: Path, acl_dir: Path, journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gatescan.uplink")
    acl = acl_dir / "acl"
    acl.write_text(  # the gate may say it is online and read acks, but not send events
        f"topic readwrite {device_topic(DEVICE_ID, Topic.STATUS)}\n"
        f"topic read {device_topic(DEVICE_ID, Topic.ACK)}\n"
    )
    acl.chmod(0o644)
    with LocalBroker(workdir=tmp_path / "strict", extra_config=f"acl_file {acl}\n") as strict:
        uplink = Uplink(
            device_id=DEVICE_ID,
            broker_url=strict.url,
            journal=journal,
            version="1",
            boot_id="b",
            resend_after=0.1,
        )
        uplink.start()
        try:
            online(uplink)
            [event] = record_events(journal, 1)
            uplink.event_recorded()

            wait_until(lambda: journal.rejected_count() == 1, 10, "the event to be set aside")
        finally:
            uplink.stop(timeout=2)
    [rejected] = journal.rejected()
    assert (rejected.event, rejected.reason) == (event, "broker_refused:0x87")
    assert rejected.detail == "Not authorized"
    assert journal.pending() == []
    refusals = [r for r in caplog.records if "broker refused event" in r.getMessage()]
    # Refused, kept and resent four times (loud once); the fifth refusal sets it aside.
    assert len(refusals) == BROKER_REFUSALS_BEFORE_REJECTING - 1
    assert [r.levelno for r in refusals][:2] == [logging.WARNING, logging.DEBUG]
    assert [event.event_id in error for error in rejection_errors(caplog)] == [True]


def test_event_beyond_the_brokers_packet_size_is_set_aside_and_the_next_one_delivered(
    tmp_path: Path, journal: Journal
) -> None:
    # paho would send it anyway and the broker drop the link for it, after every reconnect.
    with LocalBroker(workdir=tmp_path / "small", extra_config="max_packet_size 2000\n") as small:
        collector = Collector(small, acking=True).start()
        changes: list[bool] = []
        uplink = Uplink(
            device_id=DEVICE_ID,
            broker_url=small.url,
            journal=journal,
            version="1",
            boot_id="b",
            on_connection_change=changes.append,
        )
        uplink.start()
        try:
            online(uplink)
            [fits] = record_events(journal, 1)
            too_big = journal.record(raw_draft(code_text="x" * 2000))
            [after] = record_events(journal, 1)
            uplink.event_recorded()

            wait_until(lambda: journal.pending() == [], 5, "the outbox to empty")
            assert changes == [True]  # the link never dropped
        finally:
            uplink.stop(timeout=2)
            collector.stop()
    assert collector.seen_ids() == [fits.event_id, after.event_id]
    [rejected] = journal.rejected()
    assert (rejected.event, rejected.reason) == (too_big, "broker_refused:0x95")
    assert rejected.detail.endswith("bytes > the broker's maximum packet size of 2000")


@contextmanager
def gate_process(broker: LocalBroker, data_dir: Path, *, keepalive: int) -> Iterator[Any]:
    """The uplink in a child process; yields its Popen and kills it on the way out."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.uplink_process",
            f"--broker-url={broker.url}",
            f"--data-dir={data_dir}",
            f"--device-id={DEVICE_ID}",
            "--boot-id=boot-child",
            f"--keepalive={keepalive}",
        ],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait(timeout=5)


def offline_seen_after(watcher: Collector, moment: float) -> float | None:
    for seen_at, status, _ in list(watcher.statuses):
        if status.state == "offline" and seen_at >= moment:
            return seen_at - moment
    return None


def will_delay(
    broker: LocalBroker,
    watcher: Collector,
    data_dir: Path,
    *,
    keepalive: int,
    signum: signal.Signals,
    limit: float,
) -> float:
    """Seconds from `signum` hitting a child gate to the broker publishing its last will."""
    with gate_process(broker, data_dir, keepalive=keepalive) as gate:
        wait_until(
            lambda: (
                (status := watcher.latest_status()) is not None
                and (status.state, status.boot_id) == ("online", "boot-child")
            ),
            15,
            "the child gate to be online",
        )
        signalled_at = time.monotonic()
        gate.send_signal(signum)
        wait_until(lambda: offline_seen_after(watcher, signalled_at) is not None, limit, "the will")
    delay = offline_seen_after(watcher, signalled_at)
    assert delay is not None
    assert latest_status(watcher).boot_id == "boot-child"
    logging.getLogger(__name__).info("last will %.3f s after %s", delay, signum.name)
    return delay


def test_sigkill_makes_broker_publish_offline_last_will_within_1_5_keepalive(
    broker: LocalBroker, collectors: MakeCollector, tmp_path: Path
) -> None:
    # The kernel closes a killed process's socket, so the broker learns at once.
    keepalive = 2
    watcher = collectors(acking=False)

    delay = will_delay(
        broker,
        watcher,
        tmp_path / "child",
        keepalive=keepalive,
        signum=signal.SIGKILL,
        limit=1.5 * keepalive + 0.5,
    )

    assert delay <= 1.5 * keepalive + 0.5


def test_frozen_gate_gets_offline_last_will_when_its_keepalive_expires(
    broker: LocalBroker, collectors: MakeCollector, tmp_path: Path
) -> None:
    # SIGSTOP stands for a hung gate or a cut cable: the socket stays open, only the keepalive
    # tells. Mosquitto 2.0 looks at keepalives every 5 s, in whole seconds (keepalive.c:
    # `last_keepalive_check + 5 < now`, `now - last_msg_in > keepalive*3/2`): up to ~7 s late.
    keepalive = 2
    watcher = collectors(acking=False)
    latest = 1.5 * keepalive + 1 + 6 + 1.0

    delay = will_delay(
        broker,
        watcher,
        tmp_path / "child",
        keepalive=keepalive,
        signum=signal.SIGSTOP,
        limit=latest,
    )

    # Never sooner than 1.5 keepalives after the last packet, which was at most 1 keepalive ago.
    assert 0.5 * keepalive <= delay <= latest
