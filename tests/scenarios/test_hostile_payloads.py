"""Issue 3, scenario 10: hostile MQTT payloads on the events topic.

Invalid JSON, 1 MiB bodies, deep nesting, wrong types, a device id other than the topic's, NUL,
CR/LF and bidi control characters, `<script>` and `=HYPERLINK(` in the fields the protocol keeps
clean: each is dead-lettered with its reason and counted, the valid events in between are stored
exactly once, and the collector stays up. A raw code's text may hold markup, formulas and line
breaks: those events are valid and stored as data (the export defuses them, test_export.py).

The slow test drives the real `gatescan collector` process through a real Mosquitto with 10,000
hostile messages and 500 valid events (plus 50 resends), and prints its throughput; the fast
test runs one of each kind through the collector's handler and a real SQLite file, and checks
that nothing in a payload or topic can forge a log line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import statistics
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from gatescan.testing.broker import LocalBroker
from gatescan.testing.collector_process import CollectorProcess
from protocol.messages import MAX_MESSAGE_BYTES, Ack, Event, parse_message
from protocol.topics import PREFIX, Topic, device_topic
from server.collector.batch import MessageHandler
from server.collector.prepare import IncomingMessage
from server.store.database import Store
from tests.support.fault_site import Figures, tally

DEVICE = "gate-01"  # hostile payloads arrive on this gate's topic, between its real events
VALID_DEVICES = (DEVICE, "gate-02", "gate-03")
MIB = 1024 * 1024
NAME = "Nguyễn Thị Thu Uyên"
HOSTILE_TEXT = [
    "<script>alert(1)</script>",
    '=HYPERLINK("http://evil.example","Bấm")',
    "\x00",
    "\r\n2026-11-26 01:00:00 INFO gatescan.collector: all events stored",
    "\u202e",
    "\u2066",
    "\u2028",
    "\ud800",
    "\x1b[2J",
]
# What a raw code's text may not hold (it may hold CR/LF, markup and formulas: those are data).
CODE_TEXT_REFUSED = ["a\x00b", "gate\u202eetag", "\u2066x", "\ud800", "\x1b[2J"]


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    reason: str | None  # the dead-letter reason it must get; None for a valid event
    event: Event | None = None


def events_topic(device_id: str) -> str:
    return device_topic(device_id, Topic.EVENTS)


# --- valid events: the gates' real traffic, some of it odd but allowed ---------------------------


def valid_event(number: int, rng: random.Random) -> Event:
    device = VALID_DEVICES[number % len(VALID_DEVICES)]
    code = f"code-{number}".encode()
    fields: dict[str, Any] = {
        "event_id": f"valid-{number:05d}-{rng.getrandbits(32):08x}",
        "device_id": device,
        "site_id": "Bến xe Mỹ Đình",
        "seq": number + 1,
        "boot_id": "6b7ea7a3-810e-4299-b27a-390d521f2cd4",
        "ts": datetime(2026, 11, 26, 1, 0, tzinfo=UTC) - timedelta(seconds=number),
        "clock_synced": number % 2 == 0,
        "direction": "in",
        "status": "recorded",
        "reason": "ok",
        "code_sha256": hashlib.sha256(code).hexdigest(),
        "code_length": len(code),
    }
    if number % 2:
        name = NAME if number % 4 == 1 else unicodedata.normalize("NFD", NAME)
        fields.update(credential_type="cccd", subject_id=f"{number:012d}", subject_name=name)
    else:
        text = rng.choice([None, *HOSTILE_TEXT[:2], "BEGIN:VCARD\r\nFN:Đức\r\nEND:VCARD"])
        fields.update(credential_type="raw", subject_id=fields["code_sha256"], code_text=text)
    return Event.model_validate(fields)


def valid_message(event: Event, with_unknown_field: bool) -> Message:
    payload = event.to_json()
    if with_unknown_field:  # readers ignore unknown fields, whatever they hold
        payload = payload[:-1] + b',"note":"<script>alert(1)</script>"}'
    return Message(events_topic(event.device_id), payload, None, event)


# --- hostile payloads: each kind with the reason it must be dead-lettered with -------------------


def hostile_fields(rng: random.Random, **changes: Any) -> dict[str, Any]:
    event = valid_event(rng.randrange(1, 10**6, 2), rng)  # a card event on DEVICE's topic
    fields = event.model_dump(mode="json") | {"device_id": DEVICE, "event_id": "hostile-0001"}
    return fields | changes


def as_json(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields).encode()  # ASCII: "\u0000", "\ud800" travel as JSON escapes


def not_json(rng: random.Random) -> bytes:
    valid = as_json(hostile_fields(rng))
    choices: list[Callable[[], bytes]] = [
        lambda: b"\xff" + rng.randbytes(rng.randrange(0, 300)),  # not UTF-8
        lambda: valid[: rng.randrange(1, len(valid) - 1)],  # cut short
        lambda: b"",
        lambda: b"[" * rng.randrange(5_000, 60_000),  # nesting beyond the recursion limit
        lambda: b'{"event_id": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
        lambda: b'{"seq": ' + b"9" * rng.randrange(4_400, 20_000) + b"}",  # int too long
        lambda: valid.replace(b'"event_id"', b'"event_id\x00"'),  # raw NUL inside a string
        lambda: valid.replace(b'"site_id": "', b'"site_id": "\r\n'),  # raw CR/LF inside a string
    ]
    return rng.choice(choices)()


def not_object(rng: random.Random) -> bytes:
    return rng.choice([b"[]", b'"event"', b"42", b"null", b"true", b"[" + as_json({}) + b"]"])


def schema(rng: random.Random) -> bytes:
    raw = {"credential_type": "raw", "subject_name": ""}
    changes: dict[str, Any] = rng.choice(
        [
            {"seq": "one"},
            {"seq": -1},
            {"seq": 2**64},
            {"ts": "yesterday"},
            {"clock_synced": "yes"},
            {"status": "maybe"},
            {"direction": ["in"]},
            {"event_id": rng.choice(HOSTILE_TEXT)},
            {"subject_name": NAME + rng.choice(HOSTILE_TEXT)},
            {"subject_name": rng.choice(HOSTILE_TEXT)},
            {"site_id": "hq" + rng.choice(HOSTILE_TEXT[2:])},
            {"boot_id": "boot" + rng.choice(HOSTILE_TEXT)},
            {"code_text": "079203012345|..."},  # a card's own text is never sent
            {"subject_id": "not-a-number"},
            {"status": "denied"},  # denied with reason ok
            {**raw, "subject_id": "", "code_text": rng.choice(CODE_TEXT_REFUSED)},
            {**raw, "subject_id": "", "subject_name": NAME},
            {"subject_name": {"nested": [[[NAME]]]}},
        ]
    )
    if rng.random() < 0.05:
        return as_json({"event_id": "hostile-0001"})  # most fields missing
    return as_json(hostile_fields(rng, **changes))


def device_mismatch(rng: random.Random) -> bytes:
    other = rng.choice(["gate-99", "gate-02", "collector"])
    if rng.random() < 0.5:
        return as_json(hostile_fields(rng, device_id=other))
    # JSON's last duplicate key wins: the body names another gate after naming this one.
    return as_json(hostile_fields(rng))[:-1] + f', "device_id": "{other}"}}'.encode()


def too_large(rng: random.Random, size: int) -> bytes:
    padded_event = as_json(hostile_fields(rng))[:-1] + b" " * size + b"}"
    choices = [
        b'{"code_text": "' + b"A" * size + b'"}',
        b"[" * size,
        rng.randbytes(size),
        padded_event,  # a valid event, padded: refused by its size before any parsing
    ]
    return rng.choice(choices)


SMALL_KINDS: dict[str, Callable[[random.Random], bytes]] = {
    "not_json": not_json,
    "not_object": not_object,
    "schema": schema,
    "device_mismatch": device_mismatch,
}
BAD_TOPICS = ("gatescan/v1/devices/gate\u202e10/events", "gatescan/v1/devices/bad!id/events")


def hostile_messages(count: int, rng: random.Random, *, mib_bodies: int) -> list[Message]:
    """`count` hostile messages: `mib_bodies` of 1 MiB, as many just over the limit, and small
    ones of every other kind (and on topics no gate may have)."""
    messages: list[Message] = []
    for _ in range(mib_bodies):
        messages.append(Message(events_topic(DEVICE), too_large(rng, MIB), "too_large"))
        over = too_large(rng, MAX_MESSAGE_BYTES + 1)[: MAX_MESSAGE_BYTES + 1]
        messages.append(Message(events_topic(DEVICE), over, "too_large"))
    while len(messages) < count:
        if rng.random() < 0.02:
            topic = rng.choice(BAD_TOPICS)
            messages.append(Message(topic, as_json(hostile_fields(rng)), "bad_topic"))
            continue
        reason = rng.choice(list(SMALL_KINDS))
        messages.append(Message(events_topic(DEVICE), SMALL_KINDS[reason](rng), reason))
    return messages


def one_of_each_kind(rng: random.Random) -> list[Message]:
    """Every hostile payload shape at least once (small sizes), for the fast test."""
    messages = [
        Message(events_topic(DEVICE), too_large(rng, MIB), "too_large"),
        Message(events_topic(DEVICE), too_large(rng, MAX_MESSAGE_BYTES + 1), "too_large"),
        *(Message(topic, as_json(hostile_fields(rng)), "bad_topic") for topic in BAD_TOPICS),
        # Mosquitto drops a client that publishes a topic with CR/LF; the collector stays safe.
        Message("gatescan/v1/devices/gate\r\n01/events", b"{}", "bad_topic"),
    ]
    for reason, make in SMALL_KINDS.items():
        messages += [Message(events_topic(DEVICE), make(rng), reason) for _ in range(40)]
    return messages


# --- the fast test: the handler, a real SQLite file, every record it logs -----------------------


def test_each_kind_of_hostile_payload_is_dead_lettered_with_its_reason_and_logged_safely(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(11)
    store = Store(tmp_path / "gatescan.db")
    acked: list[str] = []

    def send_ack(_device: str, payload: bytes) -> bool:
        acked.extend(Ack.model_validate_json(payload).event_ids)
        return True

    handler = MessageHandler(store=store, send_ack=send_ack)
    hostile = one_of_each_kind(rng)
    valid = [valid_message(valid_event(n, rng), n % 5 == 0) for n in range(30)]
    messages = hostile + valid
    rng.shuffle(messages)
    caplog.set_level(logging.DEBUG)

    cost: dict[str | None, list[float]] = {}
    for message in messages:
        began = time.perf_counter()
        handler.handle([IncomingMessage(message.topic, message.payload)])
        cost.setdefault(message.reason, []).append(time.perf_counter() - began)

    medians = {
        str(k): f"{statistics.median(v) * 1000:.2f} ms" for k, v in sorted(cost.items(), key=str)
    }
    print(f"\nhandling time per message (debug logging on), median by reason: {medians}")
    expected = Counter(message.reason for message in hostile)
    assert store.dead_letter_counts() == expected
    assert handler.counters.dead_letter_reasons == expected
    stored = {entry.event_id: entry.event for entry in store.entries()}
    assert stored == {m.event.event_id: m.event for m in valid if m.event is not None}
    assert sorted(acked) == sorted(stored)
    assert [r.getMessage() for r in caplog.records if not r.getMessage().isprintable()] == []
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    warnings = Counter(
        r.args[1]  # (topic, reason, detail, note)
        for r in caplog.records
        if r.levelno == logging.WARNING and isinstance(r.args, tuple) and "dead letter" in r.msg
    )
    assert warnings == Counter(dict.fromkeys(expected, 1))  # one per reason: no log flood


def test_dead_letter_warnings_come_back_after_a_quiet_minute(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    handler = MessageHandler(
        store=Store(tmp_path / "gatescan.db"), send_ack=lambda *_: True, monotonic=lambda: now[0]
    )
    caplog.set_level(logging.DEBUG, logger="gatescan.collector")

    for at in (0.0, 30.0, 59.0, 61.0):
        now[0] = at
        handler.handle([IncomingMessage(events_topic(DEVICE), b"{not json")])

    levels = [r.levelno for r in caplog.records if "dead letter" in r.getMessage()]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG, logging.WARNING]
    assert handler.counters.dead_letter_reasons == {"not_json": 4}


# --- the slow test: the real collector process, a real Mosquitto, 10,000 hostile messages --------


class Publisher:
    """A paho client that publishes anything on any gate's topic (no ACL on the test broker) and
    notes when each ack comes back."""

    def __init__(self, broker: LocalBroker) -> None:
        self._lock = threading.Lock()
        self.acks: list[tuple[float, Ack]] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(f"{PREFIX}/+/{Topic.ACK.value}", qos=1)
        assert self._subscribed.wait(10), "the ack subscription was not granted"

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        ack = parse_message(Topic.ACK, bytes(message.payload))
        with self._lock:
            self.acks.append((time.monotonic(), ack))

    def ack_count(self) -> int:
        """Events acked as stored, one per id an ack names (the collector acks a batch's events
        from one gate in one message); rejections are counted by the dead letters instead."""
        with self._lock:
            return sum(len(ack.event_ids) for _, ack in self.acks)

    def first_ack_times(self) -> dict[str, float]:
        with self._lock:
            acks = list(self.acks)
        first: dict[str, float] = {}
        for at, ack in acks:
            for event_id in ack.event_ids:
                first.setdefault(event_id, at)
        return first

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_paced(
    publisher: Publisher, messages: list[Message], handled: Callable[[], int], window: int
) -> dict[str, float]:
    """Publish every message at QoS 1, keeping at most `window` not yet handled by the collector:
    the broker queues at most 1,000 messages for a client (max_queued_messages) and drops the
    rest, so an attacker flooding faster than that loses messages at the broker, not here.
    Returns when each valid event was first published."""
    published_at: dict[str, float] = {}
    for sent, message in enumerate(messages):
        if sent % 50 == 0:
            deadline = time.monotonic() + 60
            while sent - handled() > window:
                assert time.monotonic() < deadline, "the collector stopped handling messages"
                time.sleep(0.005)  # a database and a counter to poll: no event to wait on
        if message.event is not None:
            published_at.setdefault(message.event.event_id, time.monotonic())
        publisher.client.publish(message.topic, message.payload, qos=1)
    return published_at


@pytest.fixture
def unqueued_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """The listening test client receives thousands of rejection acks meant for the hostile
    'gates'; no per-client queue limit, so the broker drops none of the acks it also needs."""
    with LocalBroker(
        workdir=tmp_path / "broker", extra_config="max_queued_messages 0\n"
    ) as running:
        yield running


@pytest.mark.slow
def test_ten_thousand_hostile_payloads_leave_the_collector_up_and_every_valid_event_stored_once(
    unqueued_broker: LocalBroker, tmp_path: Path, record_figures: Callable[[Figures], None]
) -> None:
    broker = unqueued_broker
    rng = random.Random(2026)
    hostile = hostile_messages(10_000, rng, mib_bodies=100)
    events = [valid_event(number, rng) for number in range(500)]
    valid = [valid_message(event, number % 7 == 0) for number, event in enumerate(events)]
    resent = [valid_message(event, False) for event in rng.sample(events, 50)]
    messages = hostile + valid + resent
    rng.shuffle(messages)
    db = tmp_path / "collector.db"
    # Without the per-gate limits: every hostile message must reach validation here (this
    # publisher never resends, and 133 MiB from one gate is far over them). What the limits do to
    # such a flood is tests/server/collector/test_collector.py's (`test_a_flood_of_...`).
    no_limits = ("--gate-max-messages-per-second", "0", "--gate-max-bytes-per-minute", "0")
    collector = CollectorProcess(
        broker_url=broker.url,
        db_url=f"sqlite:///{db}",
        log_path=tmp_path / "collector.log",
        options=no_limits,
    ).wait_until_subscribed()
    store = Store(db)
    publisher = Publisher(broker)

    def handled() -> int:
        return publisher.ack_count() + store.dead_letter_count()

    started = time.monotonic()
    try:
        published_at = publish_paced(publisher, messages, handled, window=400)
        deadline = started + 300
        # Every valid event acked and every hostile message dead-lettered. (Not handled() ==
        # len(messages): a resend in the same batch as its first copy is acked once with it.)
        while len(publisher.first_ack_times()) + store.dead_letter_count() < len(events) + len(
            hostile
        ):
            assert collector.running(), collector.log_text()[-3000:]
            assert time.monotonic() < deadline, f"{handled()} of {len(messages)} handled"
            time.sleep(0.01)  # a database and a counter to poll
        elapsed = time.monotonic() - started
        first_acks = publisher.first_ack_times()
        assert collector.running()
        rss_kib = collector.rss_kib()
    finally:
        publisher.close()
        exit_code = collector.stop()

    assert exit_code == 0  # it was up all along and shut down cleanly on SIGTERM
    assert "Traceback" not in collector.log_text()
    expected = Counter(message.reason for message in hostile)
    assert store.dead_letter_counts() == expected
    stored = list(store.entries())
    assert {entry.event_id: entry.event for entry in stored} == {e.event_id: e for e in events}
    assert sorted(first_acks) == sorted(event.event_id for event in events)
    counts = tally(events, stored)
    assert (counts.stored, counts.duplicates, counts.lost, counts.invented) == (500, 0, 0, 0)

    latencies = sorted(first_acks[i] - published_at[i] for i in first_acks)
    megabytes = sum(len(message.payload) for message in messages) / MIB
    summary = (
        f"{len(messages)} messages ({megabytes:.0f} MiB) in {elapsed:.1f} s: "
        f"{len(messages) / elapsed:.0f} msg/s, {megabytes / elapsed:.1f} MiB/s; "
        f"valid event publish-to-ack p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms (400 messages queued ahead); "
        f"collector RSS {(rss_kib or 0) / 1024:.0f} MiB; "
        f"dead letters {dict(sorted(expected.items()))}"
    )
    print(f"\nhostile run: {summary}")
    record_figures(
        Figures(
            scenario="10",
            title="10,000 hostile payloads on the events topic",
            tally=counts,
            recover_s=None,
            notes=summary,
        )
    )
