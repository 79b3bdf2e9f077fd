"""The site's broker security on the real Mosquitto: the ACL file the repo ships
(deploy/mosquitto/gatescan.acl, used in place, not copied), users made by mosquitto_passwd, and the
settings of deploy/mosquitto/gatescan.conf that decide who gets in and under which client id.

Why gatescan.conf is not used verbatim here: its listeners are fixed ports (TLS on 8883, plain
MQTT on 127.0.0.1:1883) and it names files under /etc/gatescan/site; these tests speak plain MQTT
to a free loopback port. So the test reads the conf and carries over what decides access:
allow_anonymous (Mosquitto's default, false, if absent), use_username_as_clientid, that a
password_file is required, and the acl_file it names (the file of that name beside it). The
config `gatescan site init` writes, TLS and all, runs verbatim in test_broker_tls.py.

What Mosquitto 2.0.11 does with this ACL, as these tests pin down:
- CONNECT with no user, an unknown user or a wrong password: CONNACK 0x87 "Not authorized" under
  MQTT v5 (not 0x86 "Bad user name or password").
- PUBLISH on a topic the user may not write: PUBACK 0x87 under v5; the message goes nowhere.
- SUBSCRIBE to a topic the user may not read (even `#`): granted (SUBACK QoS 1). The acl_file
  checks read access per message at delivery, so nothing the user may not read ever arrives,
  retained messages included.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from device.journal.journal import Journal
from device.uplink.link import Uplink
from gatescan.testing.broker import BrokerAccess, LocalBroker, write_password_file
from gatescan.testing.samples import sample_draft, sample_event
from protocol.messages import Ack, Command, Event, Status, Telemetry, parse_message
from protocol.topics import Topic, device_topic
from server.collector.commands import door_releaser
from server.collector.service import Collector
from server.store.database import DeviceRecord, Store
from tests.support import waiting
from tests.support.paths import PROJECT_ROOT

SITE_CONF = PROJECT_ROOT / "deploy" / "mosquitto" / "gatescan.conf"
GATE_A = "gate-a"
GATE_B = "gate-b"
COLLECTOR_USER = "collector"
PASSWORDS = {GATE_A: "a-secret", GATE_B: "b-secret", COLLECTOR_USER: "collector-secret"}
NOT_AUTHORIZED = 0x87
GRANTED_QOS_1 = 0x01
TIMEOUT = 5.0


def wait_until(condition: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    waiting.wait_until(condition, timeout, what, interval=0.01)


def read_site_settings(conf: Path) -> dict[str, str]:
    """A Mosquitto config file as {option: value}; a repeated option keeps its last value."""
    settings: dict[str, str] = {}
    for line in conf.read_text(encoding="utf-8").splitlines():
        option, _, value = line.strip().partition(" ")
        if option and not option.startswith("#"):
            settings[option] = value.strip()
    return settings


def device_record(store: Store, device_id: str) -> DeviceRecord | None:
    return next((record for record in store.devices() if record.device_id == device_id), None)


class PlainClient:
    """A bare paho MQTT v5 client that records what the broker answers: no retries, no logic."""

    def __init__(
        self,
        broker: LocalBroker,
        username: str | None,
        password: str | None,
        client_id: str | None = None,
    ) -> None:
        self.connack: ReasonCode | None = None
        self.messages: list[mqtt.MQTTMessage] = []
        self._answered = threading.Event()
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._pubacks: dict[int, ReasonCode] = {}
        self._lock = threading.Lock()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"plain-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        self.disconnected = threading.Event()
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *_: self.disconnected.set()
        self._client.on_subscribe = self._on_subscribe
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        assert self._answered.wait(TIMEOUT), "the broker sent no CONNACK"

    def _on_connect(
        self, _c: object, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        self.connack = reason
        if reason.is_failure:
            self._client.disconnect()  # else paho's loop retries, and close() waits out its delay
        self._answered.set()

    def _on_subscribe(
        self, _c: object, _u: object, mid: int, reasons: list[ReasonCode], _p: object
    ) -> None:
        with self._lock:
            self._subacks[mid] = reasons

    def _on_publish(self, _c: object, _u: object, mid: int, reason: ReasonCode, _p: object) -> None:
        with self._lock:
            self._pubacks[mid] = reason  # paho calls this before wait_for_publish() returns

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(message)

    def subscribe(self, *topic_filters: str) -> list[int]:
        """The SUBACK's reason code for each filter, in order."""
        _, mid = self._client.subscribe([(topic, 1) for topic in topic_filters])
        assert mid is not None, "paho could not send the SUBSCRIBE"
        wait_until(lambda: mid in self._subacks, "the SUBACK")
        return [reason.value for reason in self._subacks[mid]]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        """Publish at QoS 1 and return the PUBACK's reason code."""
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), f"no PUBACK for {topic}"
        return self._pubacks[info.mid].value

    def received(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return [(message.topic, bytes(message.payload)) for message in self.messages]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def site_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    settings = read_site_settings(SITE_CONF)
    assert "password_file" in settings, "the site's broker must check passwords"
    access = BrokerAccess(
        password_file=write_password_file(tmp_path / "passwd", PASSWORDS),
        acl_file=SITE_CONF.parent / Path(settings["acl_file"]).name,
        allow_anonymous=settings.get("allow_anonymous", "false") == "true",
        username_as_client_id=settings.get("use_username_as_clientid", "false") == "true",
    )
    with LocalBroker(workdir=tmp_path / "broker", access=access) as broker:
        yield broker


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "collector.db") as opened:
        yield opened


@pytest.fixture
def collector(site_broker: LocalBroker, store: Store) -> Iterator[Collector]:
    running = Collector(
        broker_url=site_broker.url,
        store=store,
        username=COLLECTOR_USER,
        password=PASSWORDS[COLLECTOR_USER],
    )
    running.start()
    try:
        assert running.wait_until_subscribed(TIMEOUT), site_broker.log_text()
        yield running
    finally:
        running.stop()


@pytest.fixture
def connect(site_broker: LocalBroker) -> Iterator[Callable[[str | None, str | None], PlainClient]]:
    clients: list[PlainClient] = []

    def connect_as(username: str | None, password: str | None) -> PlainClient:
        client = PlainClient(site_broker, username, password)
        clients.append(client)
        return client

    yield connect_as
    for client in clients:
        client.close()


def gate_uplink(broker: LocalBroker, journal: Journal, device_id: str) -> Uplink:
    return Uplink(
        device_id=device_id,
        broker_url=broker.url,
        journal=journal,
        version="test",
        boot_id="boot-1",
        resend_after=0.5,  # a collector still subscribing gets the event again soon
        username=device_id,
        password=PASSWORDS[device_id],
    )


@contextmanager
def gate_delivering_one_event(
    broker: LocalBroker, tmp_path: Path, device_id: str
) -> Iterator[tuple[Event, Uplink]]:
    """A gate's uplink, started with one event journaled, once the collector has acked it; the
    uplink stops when the block ends."""
    with Journal(tmp_path / device_id) as journal:
        event = journal.record(sample_draft(device_id=device_id))
        uplink = gate_uplink(broker, journal, device_id)
        uplink.start()
        try:
            wait_until(lambda: journal.outbox_depth() == 0, "the collector's ack")
            yield event, uplink
        finally:
            uplink.stop()


def test_a_gate_logged_in_as_its_device_id_delivers_to_the_collector_which_acks(
    site_broker: LocalBroker, collector: Collector, store: Store, tmp_path: Path
) -> None:
    with gate_delivering_one_event(site_broker, tmp_path, GATE_A) as (event, uplink):
        uplink.publish_telemetry(
            Telemetry(ts=datetime.now(UTC), uptime_s=1.0, fps=30.0, decode_ms=2.0,
                      outbox_depth=0, clock_synced=True, version="test")
        )  # fmt: skip
        wait_until(
            lambda: getattr(device_record(store, GATE_A), "telemetry", None),
            "the gate's telemetry at the collector",
        )
    wait_until(
        lambda: getattr(device_record(store, GATE_A), "state", None) == "offline",
        "the gate's retained status, offline since it stopped",
    )

    assert [entry.event_id for entry in store.entries()] == [event.event_id]
    assert store.dead_letter_count() == 0


def test_a_gate_cannot_publish_on_another_gates_topics_nor_ack_itself(
    connect: Callable[[str | None, str | None], PlainClient], collector: Collector, store: Store
) -> None:
    gate_a = connect(GATE_A, PASSWORDS[GATE_A])
    forged = sample_event(device_id=GATE_B)
    attempts = {
        device_topic(GATE_B, Topic.EVENTS): forged.to_json(),
        device_topic(GATE_B, Topic.STATUS): Status(state="offline").to_json(),
        device_topic(GATE_B, Topic.TELEMETRY): b"{}",
        device_topic(GATE_B, Topic.ACK): Ack(event_ids=[forged.event_id]).to_json(),
        # Only the collector may say an event is stored, so a gate cannot empty its own outbox.
        device_topic(GATE_A, Topic.ACK): Ack(event_ids=[forged.event_id]).to_json(),
    }

    answers = {topic: gate_a.publish(topic, payload) for topic, payload in attempts.items()}

    assert answers == {topic: NOT_AUTHORIZED for topic in attempts}
    # The broker passes on one client's messages in order: once the collector has stored gate A's
    # own event, anything gate A sent before it would have reached the collector first.
    own = sample_event(device_id=GATE_A)
    assert gate_a.publish(device_topic(GATE_A, Topic.EVENTS), own.to_json()) == 0
    wait_until(lambda: store.count_entries() >= 1, "gate A's own event at the collector")
    assert [entry.event_id for entry in store.entries()] == [own.event_id]
    assert store.dead_letter_count() == 0
    assert device_record(store, GATE_B) is None


def test_a_gate_receives_no_other_gates_acks_events_or_status_whatever_it_subscribes_to(
    connect: Callable[[str | None, str | None], PlainClient], collector: Collector, store: Store
) -> None:
    gate_b = connect(GATE_B, PASSWORDS[GATE_B])
    gate_b.subscribe(device_topic(GATE_B, Topic.ACK))
    online = Status(state="online", version="test").to_json()
    assert gate_b.publish(device_topic(GATE_B, Topic.STATUS), online, retain=True) == 0
    gate_a = connect(GATE_A, PASSWORDS[GATE_A])
    prying = [
        device_topic(GATE_B, Topic.ACK),
        "gatescan/v1/devices/+/events",
        "gatescan/v1/devices/+/status",
        "#",
    ]

    # Mosquitto 2.0.11's acl_file grants these; it checks read access on each message instead.
    assert gate_a.subscribe(*prying) == [GRANTED_QOS_1] * len(prying)

    b_event = sample_event(device_id=GATE_B)
    assert gate_b.publish(device_topic(GATE_B, Topic.EVENTS), b_event.to_json()) == 0
    wait_until(lambda: gate_b.received(), "the collector's ack to gate B")
    # Gate B's event and ack went out before gate A's own ack was even sent, and the broker
    # delivers to gate A in order: when that ack (through `#`) arrives, nothing else has.
    a_event = sample_event(device_id=GATE_A)
    assert gate_a.publish(device_topic(GATE_A, Topic.EVENTS), a_event.to_json()) == 0
    wait_until(lambda: gate_a.received(), "the collector's ack to gate A")

    assert [topic for topic, _ in gate_a.received()] == [device_topic(GATE_A, Topic.ACK)]
    [(_, payload)] = gate_a.received()
    assert parse_message(Topic.ACK, payload).event_ids == [a_event.event_id]
    [(_, b_payload)] = gate_b.received()
    assert parse_message(Topic.ACK, b_payload).event_ids == [b_event.event_id]


@pytest.mark.parametrize(
    ("username", "password"),
    [
        (None, None),  # anonymous
        (GATE_A, "not-a-secret"),  # wrong password
        (GATE_A, PASSWORDS[GATE_B]),  # another gate's password
        ("gate-unknown", "a-secret"),  # no such user
    ],
    ids=["anonymous", "wrong-password", "another-gates-password", "unknown-user"],
)
def test_a_client_without_valid_credentials_is_refused_at_connect(
    connect: Callable[[str | None, str | None], PlainClient],
    username: str | None,
    password: str | None,
) -> None:
    client = connect(username, password)

    assert client.connack is not None
    # Mosquitto 2.0.11 answers every failed login with 0x87, never 0x86 (bad user name/password).
    assert client.connack.value == NOT_AUTHORIZED
    assert client.connack.getName() == "Not authorized"


def send_one_event_from_gate_a(broker: LocalBroker, data_dir: Path, timeout: float) -> Event | None:
    """Record an event in a real journal and run gate A's uplink until the collector acks it
    (the event) or the timeout passes (None)."""
    with Journal(data_dir) as journal:
        event = journal.record(sample_draft(device_id=GATE_A))
        uplink = gate_uplink(broker, journal, GATE_A)
        uplink.start()
        try:
            deadline = time.monotonic() + timeout
            while journal.outbox_depth() and time.monotonic() < deadline:
                time.sleep(0.02)
            return None if journal.outbox_depth() else event
        finally:
            uplink.stop()


@pytest.mark.parametrize("password_from", ["environment", "systemd-credential"])
def test_collector_command_logs_in_with_its_password_and_stores_an_event(
    site_broker: LocalBroker, tmp_path: Path, password_from: str
) -> None:
    env = dict(os.environ)
    for name in ("GATESCAN_MQTT_PASSWORD", "CREDENTIALS_DIRECTORY"):
        env.pop(name, None)
    if password_from == "environment":
        env["GATESCAN_MQTT_PASSWORD"] = PASSWORDS[COLLECTOR_USER]
    else:  # what systemd's LoadCredential=mqtt_password:... hands the service
        credentials = tmp_path / "credentials"
        credentials.mkdir()
        (credentials / "mqtt_password").write_text(PASSWORDS[COLLECTOR_USER] + "\n")
        env["CREDENTIALS_DIRECTORY"] = str(credentials)
    db = tmp_path / "cli-collector.db"
    command = [sys.executable, "-m", "gatescan.cli", "collector", "--broker", site_broker.url,
               "--db", str(db)]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        # The ack comes from the collector after its commit: it logged in, subscribed, stored.
        acked = send_one_event_from_gate_a(site_broker, tmp_path / GATE_A, timeout=20)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=10)[0]
    assert acked is not None, f"`gatescan collector` sent no ack; its output:\n{output}"
    assert process.returncode == 0, output
    with Store(db) as stored:
        assert [entry.event_id for entry in stored.entries()] == [acked.event_id]


def test_a_gate_cannot_take_the_collectors_session_nor_knock_another_gate_off(
    site_broker: LocalBroker,
    connect: Callable[[str | None, str | None], PlainClient],
    collector: Collector,
    store: Store,
    tmp_path: Path,
) -> None:
    """Without use_username_as_clientid, gate-b's credentials with the collector's client id
    took its persistent session (and the events queued in it), and with gate-a's id knocked
    gate-a off. Now a client's id is its user name, whatever it asks for."""
    gate_a = PlainClient(site_broker, GATE_A, PASSWORDS[GATE_A], client_id=GATE_A)
    impostors = [
        PlainClient(site_broker, GATE_B, PASSWORDS[GATE_B], client_id=client_id)
        for client_id in ("gatescan-collector", COLLECTOR_USER, GATE_A)
    ]
    try:
        assert all(not impostor.connack.is_failure for impostor in impostors if impostor.connack)
        time.sleep(0.5)  # a takeover would have disconnected them by now
        assert not gate_a.disconnected.is_set(), "gate-a was knocked off"
        # The collector still holds its session: a gate's event is stored and acked.
        with gate_delivering_one_event(site_broker, tmp_path, GATE_A) as (event, _uplink):
            pass
        assert [entry.event_id for entry in store.entries()] == [event.event_id]
        # Two connections of one user share one client id: the later one takes over.
        assert impostors[0].disconnected.is_set() and impostors[1].disconnected.is_set()
    finally:
        for client in (*impostors, gate_a):
            client.close()


def test_only_the_collector_sends_a_gate_its_commands_and_only_that_gate_reads_them(
    connect: Callable[[str | None, str | None], PlainClient], collector: Collector
) -> None:
    gate_a = connect(GATE_A, PASSWORDS[GATE_A])
    gate_b = connect(GATE_B, PASSWORDS[GATE_B])
    assert gate_a.subscribe(device_topic(GATE_A, Topic.COMMAND)) == [GRANTED_QOS_1]
    assert gate_b.subscribe("#") == [GRANTED_QOS_1]  # granted: read access is checked per message
    forged = Command(
        command_id="forged-0001", action="release_door", issued_at=datetime.now(UTC), by="b"
    ).to_json()
    assert gate_b.publish(device_topic(GATE_A, Topic.COMMAND), forged) == NOT_AUTHORIZED
    assert gate_b.publish(device_topic(GATE_B, Topic.COMMAND), forged) == NOT_AUTHORIZED

    assert door_releaser(collector)(GATE_A, "alice", "cmd-acl-0001") is None
    wait_until(lambda: gate_a.received(), "the command at gate A")
    [(topic, payload)] = gate_a.received()
    assert topic == device_topic(GATE_A, Topic.COMMAND)
    assert parse_message(Topic.COMMAND, payload).command_id == "cmd-acl-0001"
    time.sleep(0.3)  # gate A's command went to gate B's `#` too, were it allowed
    assert gate_b.received() == []
