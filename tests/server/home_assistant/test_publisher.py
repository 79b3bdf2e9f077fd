"""The gates in Home Assistant, end to end: a real Mosquitto, the real collector storing what a
gate publishes, the publisher reading the database, and a client subscribed as Home Assistant
is (`homeassistant/#`), whose configs are checked against the keys of HA's MQTT discovery docs
(home-assistant.io: MQTT Binary sensor, MQTT Sensor, "MQTT Discovery": device and origin)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gatescan.testing.broker import LocalBroker
from gatescan.testing.samples import sample_cards, sample_event
from protocol.messages import Status, Telemetry
from protocol.topics import Topic, device_topic
from server.app import CollectorLogin, HomeAssistantOptions, Server, ServerOptions, build_server
from server.clock import utc_now
from server.home_assistant.discovery import Prefixes
from server.home_assistant.publisher import HomeAssistantLogin
from server.store.gates import GateRegistry, NewGate
from tests.support.waiting import wait_until

# The keys HA's MQTT discovery takes for these two components (its docs' "Configuration
# Variables"), and those of the device and origin maps. A key outside them is ignored by HA at
# best and refused by its schema at worst: a typo here would be an entity that never works.
COMMON_KEYS = {
    "availability", "availability_mode", "availability_template", "availability_topic",
    "device", "device_class", "enabled_by_default", "encoding", "entity_category",
    "expire_after", "force_update", "icon", "json_attributes_template", "json_attributes_topic",
    "name", "object_id", "default_entity_id", "origin", "payload_available",
    "payload_not_available", "platform", "qos", "state_topic", "unique_id", "value_template",
}  # fmt: skip
BINARY_SENSOR_KEYS = COMMON_KEYS | {"off_delay", "payload_off", "payload_on"}
SENSOR_KEYS = COMMON_KEYS | {
    "last_reset_value_template", "options", "suggested_display_precision", "state_class",
    "unit_of_measurement",
}  # fmt: skip
DEVICE_KEYS = {
    "configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
    "model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device",
}  # fmt: skip
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
AVAILABILITY_KEYS = {"topic", "payload_available", "payload_not_available", "value_template"}
BINARY_SENSOR_CLASSES = {"connectivity", "problem", "running", "door", "lock"}  # those we might use
SENSOR_CLASSES = {"timestamp", "duration", "temperature"}


class HomeAssistantSide:
    """A client subscribed as Home Assistant is: `homeassistant/#` and the states' topics."""

    def __init__(self, broker: LocalBroker, topics: tuple[str, ...]) -> None:
        self.retained: dict[str, bytes] = {}
        self.received: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="", protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.client.subscribe([(topic, 1) for topic in topics])
        assert self._subscribed.wait(5)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.received.append((message.topic, bytes(message.payload)))
            if message.payload:
                self.retained[message.topic] = bytes(message.payload)
            else:
                self.retained.pop(message.topic, None)

    def get(self, topic: str) -> bytes | None:
        with self._lock:
            return self.retained.get(topic)

    def config(self, topic: str) -> dict[str, Any] | None:
        payload = self.get(topic)
        return None if payload is None else json.loads(payload)

    def all_payloads(self) -> list[bytes]:
        with self._lock:
            return [payload for _, payload in self.received]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Gate:
    """What a gate publishes, on its own topics."""

    def __init__(self, broker: LocalBroker, device_id: str) -> None:
        self.device_id = device_id
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=device_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def send(self, kind: Topic, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(device_topic(self.device_id, kind), payload, 1, retain)
        info.wait_for_publish(5)

    def status(self, state: str) -> None:
        status = Status(
            state=state,  # type: ignore[arg-type]
            ts=utc_now(),
            version="1.2.3",
            site_id="hq",
            location="Lobby, lane 2",
            direction="in",
        )
        self.send(Topic.STATUS, status.to_json(), retain=True)

    def telemetry(self, fps: float) -> None:
        telemetry = Telemetry(
            ts=utc_now(), uptime_s=10.0, fps=fps, decode_ms=3.0, outbox_depth=0,
            clock_synced=True, version="1.2.3",
        )  # fmt: skip
        self.send(Topic.TELEMETRY, telemetry.to_json())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def site(tmp_path: Path, broker: LocalBroker) -> Iterator[tuple[Server, Gate, HomeAssistantSide]]:
    db = f"sqlite:///{tmp_path / 'gatescan.db'}"
    prefixes = Prefixes("homeassistant", "gatescan/ha")
    options = ServerOptions(
        db_url=db,
        collector=CollectorLogin(broker.url, client_id="collector", share_group=None),
        home_assistant=HomeAssistantOptions(HomeAssistantLogin(broker.url), prefixes, every_s=0.1),
    )
    server = build_server(options)
    registry = GateRegistry(server.store.engine)
    for number, gate_id in enumerate(("gate-hq-01", "gate.hq.02")):
        expires = utc_now() + timedelta(days=1)
        registry.add(NewGate(gate_id, "hq", "Lobby"), str(number) * 64, expires, utc_now())
        registry.set_state(gate_id, "enrolled", utc_now())
    ha = HomeAssistantSide(broker, ("homeassistant/#", "gatescan/ha/#"))
    stop = threading.Event()
    server.start(stop)
    gate = Gate(broker, "gate-hq-01")
    try:
        yield server, gate, ha
    finally:
        gate.close()
        server.stop()
        ha.close()


def _config_topic(component: str, node: str, entity: str) -> str:
    return f"homeassistant/{component}/{node}/{entity}/config"


def test_each_gate_is_a_device_of_three_entities_as_ha_discovery_reads_them(
    site: tuple[Server, Gate, HomeAssistantSide],
) -> None:
    _server, gate, ha = site
    gate.status("online")
    gate.telemetry(29.5)
    event = sample_event(device_id="gate-hq-01", site_id="hq", seq=1)
    gate.send(Topic.EVENTS, event.to_json())

    connectivity_topic = _config_topic("binary_sensor", "gatescan_gate-hq-01", "connectivity")
    wait_until(lambda: ha.get("gatescan/ha/gate-hq-01/last_scan"), 10, "the last scan")
    wait_until(lambda: ha.get("gatescan/ha/gate-hq-01/fps") == b"29.5", 10, "the fps")
    wait_until(lambda: ha.get("gatescan/ha/gate-hq-01/connectivity") == b"ON", 10, "online")
    connectivity = ha.config(connectivity_topic)
    last_scan = ha.config(_config_topic("sensor", "gatescan_gate-hq-01", "last_scan"))
    fps = ha.config(_config_topic("sensor", "gatescan_gate-hq-01", "fps"))
    assert connectivity is not None and last_scan is not None and fps is not None

    for config, keys, classes in (
        (connectivity, BINARY_SENSOR_KEYS, BINARY_SENSOR_CLASSES),
        (last_scan, SENSOR_KEYS, SENSOR_CLASSES),
        (fps, SENSOR_KEYS, SENSOR_CLASSES),
    ):
        assert set(config) <= keys, set(config) - keys
        assert config["state_topic"].startswith("gatescan/ha/gate-hq-01/")
        assert set(config["device"]) <= DEVICE_KEYS
        assert set(config["origin"]) <= ORIGIN_KEYS
        for availability in config["availability"]:
            assert set(availability) <= AVAILABILITY_KEYS
        assert config.get("device_class", next(iter(classes))) in classes
        # HA ties entities to one device by its identifiers; a unique_id per entity.
        assert config["device"]["identifiers"] == ["gatescan_gate-hq-01"]
    assert len({c["unique_id"] for c in (connectivity, last_scan, fps)}) == 3
    assert connectivity["device_class"] == "connectivity"
    assert (connectivity["payload_on"], connectivity["payload_off"]) == ("ON", "OFF")
    assert last_scan["device_class"] == "timestamp"
    assert fps["state_class"] == "measurement" and fps["availability_mode"] == "all"
    device = connectivity["device"]
    assert device["name"] == "gate-hq-01 (Lobby, lane 2)"
    assert device["sw_version"] == "1.2.3"
    assert device["suggested_area"] == "hq"

    # The timestamp is what HA's timestamp class parses: RFC 3339 with its offset, the scan's.
    scanned = datetime.fromisoformat(ha.get("gatescan/ha/gate-hq-01/last_scan").decode())  # type: ignore[union-attr]
    assert scanned.tzinfo is not None
    assert abs(scanned - event.ts.astimezone(UTC)) < timedelta(seconds=1)

    # A registered gate never heard from is a device too, offline; its id's dots are written
    # `_dot_` in the node id (HA allows none there), its topics and identifiers kept apart.
    other = _config_topic("binary_sensor", "gatescan_gate_dot_hq_dot_02", "connectivity")
    wait_until(lambda: ha.config(other), 10, "the second gate's config")
    assert ha.get("gatescan/ha/gate.hq.02/connectivity") == b"OFF"
    assert ha.get("gatescan/ha/bridge/availability") == b"online"

    # No personal data ever: not the person's ID number, name or code.
    person = sample_cards()[0]
    for payload in ha.all_payloads():
        assert person.id12.encode() not in payload
        assert person.name.encode() not in payload
        assert event.code_sha256.encode() not in payload
        assert event.event_id.encode() not in payload


def test_a_status_change_reaches_ha_and_a_retired_gate_is_removed(
    site: tuple[Server, Gate, HomeAssistantSide], broker: LocalBroker
) -> None:
    server, gate, ha = site
    gate.status("online")
    gate.telemetry(12.0)
    wait_until(lambda: ha.get("gatescan/ha/gate-hq-01/connectivity") == b"ON", 10, "online")
    assert ha.get("gatescan/ha/gate-hq-01/availability") == b"online"

    gate.status("offline")  # as its last will or a clean shutdown says it
    wait_until(lambda: ha.get("gatescan/ha/gate-hq-01/connectivity") == b"OFF", 10, "offline")
    assert ha.get("gatescan/ha/gate-hq-01/availability") == b"offline"  # fps unavailable

    GateRegistry(server.store.engine).set_state("gate-hq-01", "retired", utc_now())
    configs = [
        _config_topic("binary_sensor", "gatescan_gate-hq-01", "connectivity"),
        _config_topic("sensor", "gatescan_gate-hq-01", "last_scan"),
        _config_topic("sensor", "gatescan_gate-hq-01", "fps"),
    ]
    wait_until(lambda: all(ha.get(topic) is None for topic in configs), 10, "the removal")
    assert ("gatescan/ha/gate-hq-01/connectivity", b"") in ha.received

    # What a Home Assistant started later finds: the other gate, nothing of the retired one.
    later = HomeAssistantSide(broker, ("homeassistant/#", "gatescan/ha/#"))
    try:
        other = _config_topic("binary_sensor", "gatescan_gate_dot_hq_dot_02", "connectivity")
        wait_until(lambda: later.get(other), 5, "the other gate's retained config")
        assert not [topic for topic in later.retained if "gate-hq-01" in topic]
    finally:
        later.close()


def test_the_bridge_says_offline_when_the_server_stops_and_configs_return_on_ha_birth(
    site: tuple[Server, Gate, HomeAssistantSide],
) -> None:
    server, _gate, ha = site
    topic = _config_topic("binary_sensor", "gatescan_gate-hq-01", "connectivity")
    wait_until(lambda: ha.config(topic), 10, "the config")
    sent = sum(1 for name, _ in ha.received if name == topic)

    # HA restarted (its birth message): it gets every config again, unchanged or not.
    ha.client.publish("homeassistant/status", b"online", 1).wait_for_publish(5)
    wait_until(
        lambda: sum(1 for name, _ in ha.received if name == topic) > sent, 10, "configs again"
    )

    assert server.home_assistant is not None
    server.home_assistant.stop()
    wait_until(
        lambda: ha.get("gatescan/ha/bridge/availability") == b"offline", 10, "bridge offline"
    )


def test_server_toml_s_section_becomes_the_publisher_s_options(tmp_path: Path) -> None:
    import argparse

    from gatescan.commands.server import home_assistant_options

    (tmp_path / "ha.password").write_text("s3cret\n", encoding="utf-8")
    config = tmp_path / "server.toml"
    config.write_text('[mqtt]\nbroker = "mqtt://127.0.0.1:1883"\n', encoding="utf-8")
    assert home_assistant_options(argparse.Namespace(config=config)) is None  # opt-in

    config.write_text(
        '[home_assistant]\nbroker = "mqtt://ha.lan:1883"\nusername = "gatescan"\n'
        'password_file = "ha.password"\ndiscovery_prefix = "ha"\nevery = 2\n',
        encoding="utf-8",
    )
    options = home_assistant_options(argparse.Namespace(config=config))

    assert options is not None
    assert (options.login.username, options.login.password) == ("gatescan", "s3cret")
    assert options.prefixes == Prefixes("ha", "gatescan/ha")
    assert options.every_s == 2
