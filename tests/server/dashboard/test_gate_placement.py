"""Where a gate stands (site, location, direction) travels in its status, from its config to the
devices table; older gates and older databases keep working."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from device.uplink.link import Placement
from firmware_config.schema import GateConfig
from protocol.messages import Status, parse_message
from protocol.topics import Topic
from protocol.verdicts import Direction
from server.store.database import Store

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


def test_an_older_gate_s_status_has_no_placement() -> None:
    status = parse_message(Topic.STATUS, b'{"state": "online", "version": "0.1.0"}')
    assert (status.site_id, status.location, status.direction) == ("", "", None)


def test_a_status_carries_the_gate_s_placement() -> None:
    placement = Placement("hq", "Cổng chính", Direction.OUT)
    status = Status(state="offline", **placement.status_fields())
    again = parse_message(Topic.STATUS, status.to_json())
    assert (again.site_id, again.location, again.direction) == ("hq", "Cổng chính", Direction.OUT)


def test_the_gate_config_has_an_optional_location() -> None:
    assert GateConfig(device_id="gate-1").location == ""
    assert GateConfig(device_id="gate-1", location="Sảnh B").location == "Sảnh B"


def test_the_store_keeps_the_placement_of_the_latest_status(tmp_path: Path) -> None:
    with Store(tmp_path / "site.db") as store:
        placed = Status(state="online", site_id="hq", location="Sảnh B", direction=Direction.IN)
        store.record_status("gate-1", placed, NOW)
        (device,) = store.devices()
        assert (device.site_id, device.location, device.direction) == ("hq", "Sảnh B", "in")


def test_an_older_database_gains_the_placement_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the devices table as it first shipped
        conn.execute(
            "CREATE TABLE devices (device_id VARCHAR(64) PRIMARY KEY, state VARCHAR(16),"
            " status_ts DATETIME, status_received_at DATETIME, version VARCHAR(200) NOT NULL,"
            " boot_id VARCHAR(64) NOT NULL, faults JSON NOT NULL, last_seen DATETIME,"
            " telemetry JSON, telemetry_at DATETIME)"
        )
        conn.execute("INSERT INTO devices VALUES ('gate-old', 'online', NULL, NULL, '0.1', 'b',"
                     " '[]', NULL, NULL, NULL)")  # fmt: skip
    with Store(path) as store:
        (device,) = store.devices()
        assert (device.device_id, device.site_id, device.location) == ("gate-old", "", "")
