"""The collector's MQTT client (paho with buffered reads and batched PUBACKs) against Mosquitto."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gatescan.testing.broker import LocalBroker
from server.collector.client import IngestClient
from tests.support.waiting import wait_until

TIMEOUT = 10.0


class Inbox:
    """An IngestClient that keeps what it receives (manual PUBACKs when asked)."""

    def __init__(self, broker: LocalBroker, client_id: str, *, manual_ack: bool = False) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = IngestClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=manual_ack,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 600
        properties.ReceiveMaximum = 500  # else Mosquitto sends 20 at a time until PUBACKed
        self.client.connect(broker.host, broker.port, clean_start=False, properties=properties)
        self.client.loop_start()
        assert self._subscribed.wait(TIMEOUT), "the subscription was not granted"

    def _on_connect(self, client: Any, *_args: Any) -> None:
        client.subscribe("test/#", qos=1)

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(message)

    def received(self) -> list[mqtt.MQTTMessage]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(broker: LocalBroker) -> Iterator[mqtt.Client]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.connect(broker.host, broker.port)
    client.loop_start()
    yield client
    client.disconnect()
    client.loop_stop()


def with_properties() -> Properties:
    properties = Properties(PacketTypes.PUBLISH)
    properties.ContentType = "application/json"
    properties.MessageExpiryInterval = 3600
    properties.UserProperty = [("trace", "x" * 300)]  # a properties block longer than 127 bytes
    return properties


def test_every_kind_of_publish_arrives_whole_and_in_order(
    broker: LocalBroker, publisher: mqtt.Client
) -> None:
    inbox = Inbox(broker, "lean-inbox")
    try:
        sent: list[tuple[str, bytes, int, bool]] = []
        for n in range(120):
            payload = bytes([n % 251]) * (n * 5711 % 70_000)  # empty up to ~70 KB: split reads
            qos, retain = n % 2, n % 50 == 0
            topic = f"test/gate-{n % 7}/événements"  # a topic in UTF-8
            props = with_properties() if n % 3 == 0 else None
            info = publisher.publish(topic, payload, qos=qos, retain=retain, properties=props)
            info.wait_for_publish(TIMEOUT)
            sent.append((topic, payload, qos, retain))

        wait_until(lambda: len(inbox.received()) == len(sent), TIMEOUT, "every message")
        got = [(m.topic, m.payload, m.qos, m.retain) for m in inbox.received()]
        # A live subscriber gets retained messages as live ones (retain flag off).
        assert got == [(topic, payload, qos, False) for topic, payload, qos, _ in sent]
    finally:
        inbox.close()


def test_ack_many_settles_exactly_the_messages_it_names(
    broker: LocalBroker, publisher: mqtt.Client
) -> None:
    inbox = Inbox(broker, "lean-acker", manual_ack=True)
    for n in range(200):
        publisher.publish("test/events", f"{n}".encode(), qos=1).wait_for_publish(TIMEOUT)
    wait_until(lambda: len(inbox.received()) == 200, TIMEOUT, "200 messages")
    first = inbox.received()
    inbox.client.ack_many([m.mid for m in first[:150]])  # one write for 150 PUBACKs
    wait_until(lambda: not inbox.client.want_write(), TIMEOUT, "the PUBACKs written")
    inbox.close()

    again = Inbox(broker, "lean-acker", manual_ack=True)  # the same session
    try:
        wait_until(lambda: len(again.received()) == 50, TIMEOUT, "the 50 not PUBACKed")
        assert [m.payload for m in again.received()] == [f"{n}".encode() for n in range(150, 200)]
        assert all(m.dup for m in again.received())
    finally:
        again.client.ack_many([m.mid for m in again.received()])
        again.close()


def test_qos0_publishes_arrive_whole_and_in_order_with_one_wakeup(broker: LocalBroker) -> None:
    inbox = Inbox(broker, "raw-receiver")
    sender = Inbox(broker, "raw-sender")
    try:
        # Payload sizes across every length of the remaining-length field (1 to 3 bytes here),
        # and a topic in UTF-8.
        sent = [
            (f"test/gate-{n % 5}/ack-ồ".encode(), bytes([n % 251]) * size)
            for n, size in enumerate([0, 1, 100, 121, 122, 5000, 16_370, 16_400, 70_000] * 20)
        ]
        with sender.client.one_wakeup():  # queued from this thread, one wake-up at the end
            for topic, payload in sent:
                assert sender.client.publish_qos0(topic, payload) == MQTTErrorCode.MQTT_ERR_SUCCESS
        wait_until(lambda: len(inbox.received()) == len(sent), TIMEOUT, "every publish")
        got = [(m.topic.encode(), m.payload, m.qos) for m in inbox.received()]
        assert got == [(topic, payload, 0) for topic, payload in sent]
    finally:
        sender.close()
        inbox.close()


def test_a_qos0_publish_without_a_connection_is_dropped_and_said_so() -> None:
    client = IngestClient(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    assert client.publish_qos0(b"test/x", b"{}") == MQTTErrorCode.MQTT_ERR_NO_CONN
    client._sock = object()  # type: ignore[assignment]  # past the connection check
    try:
        with pytest.raises(ValueError, match="topic name"):
            client.publish_qos0(b"", b"{}")
    finally:
        client._sock = None


def test_qos1_publishes_are_settled_by_their_pubacks(broker: LocalBroker) -> None:
    inbox = Inbox(broker, "lean-receiver")
    sender = Inbox(broker, "lean-sender")  # paho's window: 20 in flight
    try:
        with sender.client.one_wakeup():
            infos = [sender.client.publish("test/events", f"{n}", qos=1) for n in range(300)]
        for info in infos:
            info.wait_for_publish(TIMEOUT)  # each PUBACK settled its message
        wait_until(lambda: len(inbox.received()) >= 300, TIMEOUT, "all 300")
        payloads = [m.payload for m in inbox.received() if m.topic == "test/events"]
        assert payloads == [f"{n}".encode() for n in range(300)]
        assert sender.client._inflight_messages == 0  # every slot of the window came back
    finally:
        sender.close()
        inbox.close()


def test_its_socket_sends_each_packet_at_once(broker: LocalBroker) -> None:
    inbox = Inbox(broker, "nodelay")
    try:
        sock = inbox.client.socket()
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        inbox.close()


def test_topic_callbacks_still_take_their_topics(
    broker: LocalBroker, publisher: mqtt.Client
) -> None:
    inbox = Inbox(broker, "lean-routed")
    special: list[bytes] = []
    inbox.client.message_callback_add("test/special", lambda _c, _u, m: special.append(m.payload))
    try:
        for topic in ("test/plain", "test/special", "test/plain"):
            publisher.publish(topic, topic.encode(), qos=1).wait_for_publish(TIMEOUT)
        wait_until(lambda: len(inbox.received()) == 2 and special, TIMEOUT, "all three")
        assert [m.topic for m in inbox.received()] == ["test/plain", "test/plain"]
        assert special == [b"test/special"]
    finally:
        inbox.close()
