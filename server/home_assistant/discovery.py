"""What Home Assistant is told about the gates: the discovery configs and the states, as topics
and payloads (no I/O; server/home_assistant/publisher.py sends them).

    discovery_messages(gate, settings) -> {topic: payload}   the retained configs of one gate
    removal_messages(device_id, settings) -> {topic: b""}    what takes them away (a retired gate)
    state_messages(gate, settings) -> {topic: payload}       its retained states

Each gate is one Home Assistant device (identifiers `gatescan_<id>`, named by its id and
location, its agent's version, its site as the suggested area) with three entities:

- connectivity: binary_sensor, class `connectivity`, `<state_prefix>/<id>/connectivity` (ON,
  OFF), available while the bridge is;
- last scan: sensor, class `timestamp`, `<state_prefix>/<id>/last_scan` (RFC 3339, UTC),
  available while the bridge is;
- frame rate: sensor, state class `measurement`, unit fps, `<state_prefix>/<id>/fps`, available
  while the bridge and the gate are.

The bridge is the server's publisher (`<state_prefix>/bridge/availability`: online, and offline
as its last will): when the server stops, every entity is unavailable rather than stale. The fps
is the gate's last telemetry, so it is unavailable while the gate is offline too
(`<state_prefix>/<id>/availability`). Connectivity is the fleet page's "online": the gate's
retained status says online and it was heard within `offline_after_s`.

No personal data: a time for the last scan, never who; counts, a version, a site and a location.
Discovery topics are `<discovery_prefix>/<component>/<node_id>/<object_id>/config`, where HA
allows only `A-Z a-z 0-9 _ -` in the node id: a gate id's dots are written `_dot_`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from protocol.release import __version__

DEFAULT_DISCOVERY_PREFIX = "homeassistant"
DEFAULT_STATE_PREFIX = "gatescan/ha"
ONLINE, OFFLINE = "online", "offline"
ENTITIES = ("connectivity", "last_scan", "fps")
COMPONENTS = {"connectivity": "binary_sensor", "last_scan": "sensor", "fps": "sensor"}


@dataclass(frozen=True)
class Prefixes:
    """Where discovery goes (HA's setting, `homeassistant` unless changed) and where the states
    go (gatescan's own topics)."""

    discovery: str = DEFAULT_DISCOVERY_PREFIX
    state: str = DEFAULT_STATE_PREFIX

    @property
    def bridge_availability(self) -> str:
        return f"{self.state}/bridge/availability"

    @property
    def ha_status(self) -> str:
        """HA's birth message (`online` when it starts): the configs are sent again then."""
        return f"{self.discovery}/status"


@dataclass(frozen=True)
class GateView:
    """What HA is told about one gate."""

    device_id: str
    site_id: str
    location: str
    version: str
    online: bool
    last_scan: datetime | None  # None: never scanned (the entity stays unknown)
    fps: float | None  # None: no telemetry yet


def node_id(device_id: str) -> str:
    """The gate's node id in discovery topics: `gatescan_` and its id, dots as `_dot_`."""
    return "gatescan_" + device_id.replace(".", "_dot_")


def config_topic(device_id: str, entity: str, prefixes: Prefixes) -> str:
    component = COMPONENTS[entity]
    return f"{prefixes.discovery}/{component}/{node_id(device_id)}/{entity}/config"


def state_topic(device_id: str, what: str, prefixes: Prefixes) -> str:
    return f"{prefixes.state}/{device_id}/{what}"


def discovery_messages(gate: GateView, prefixes: Prefixes) -> dict[str, bytes]:
    """The three retained configs of one gate, by topic."""
    return {
        config_topic(gate.device_id, entity, prefixes): _json(_config(gate, entity, prefixes))
        for entity in ENTITIES
    }


def removal_messages(device_id: str, prefixes: Prefixes) -> dict[str, bytes]:
    """Empty retained configs (HA removes the entities, and the device with its last one) and
    empty retained states (the broker forgets them)."""
    configs = {config_topic(device_id, entity, prefixes): b"" for entity in ENTITIES}
    states = {state_topic(device_id, what, prefixes): b"" for what in (*ENTITIES, "availability")}
    return configs | states


def state_messages(gate: GateView, prefixes: Prefixes) -> dict[str, bytes]:
    """The gate's retained states; a value not known yet is left out (HA shows it unknown)."""
    topic = lambda what: state_topic(gate.device_id, what, prefixes)  # noqa: E731
    states = {
        topic("connectivity"): b"ON" if gate.online else b"OFF",
        topic("availability"): (ONLINE if gate.online else OFFLINE).encode(),
    }
    if gate.last_scan is not None:
        when = gate.last_scan.astimezone(UTC).isoformat(timespec="seconds")
        states[topic("last_scan")] = when.encode()
    if gate.fps is not None:
        states[topic("fps")] = f"{gate.fps:.1f}".encode()
    return states


def _config(gate: GateView, entity: str, prefixes: Prefixes) -> dict[str, Any]:
    bridge = {"topic": prefixes.bridge_availability}
    config: dict[str, Any] = {
        "unique_id": f"{node_id(gate.device_id)}_{entity}",
        "state_topic": state_topic(gate.device_id, entity, prefixes),
        "availability": [bridge],
        "device": _device(gate),
        "origin": {"name": "gatescan", "sw_version": __version__},
    }
    if entity == "connectivity":
        config |= {"name": "Connectivity", "device_class": "connectivity"}
        config |= {"payload_on": "ON", "payload_off": "OFF"}
    elif entity == "last_scan":
        config |= {"name": "Last scan", "device_class": "timestamp", "icon": "mdi:qrcode-scan"}
    else:
        gate_itself = {"topic": state_topic(gate.device_id, "availability", prefixes)}
        config |= {"name": "Frame rate", "state_class": "measurement"}
        config |= {"unit_of_measurement": "fps", "entity_category": "diagnostic"}
        config |= {"availability": [bridge, gate_itself], "availability_mode": "all"}
    return config


def _device(gate: GateView) -> dict[str, Any]:
    name = f"{gate.device_id} ({gate.location})" if gate.location else gate.device_id
    device: dict[str, Any] = {
        "identifiers": [node_id(gate.device_id)],
        "name": name,
        "manufacturer": "gatescan",
        "model": "entry gate",
    }
    if gate.version:
        device["sw_version"] = gate.version
    if gate.site_id:
        device["suggested_area"] = gate.site_id
    return device


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
