"""Where a gate stands (site, location, direction) travels in its status, from its config to the
devices table; older gates and older databases keep working."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import JSON, Column, DateTime, MetaData, String, Table, create_engine, insert
from sqlalchemy.engine import URL

from device.uplink.link import Placement
from firmware_config.schema import GateConfig
from protocol.messages import Status, parse_message
from protocol.topics import Topic
from protocol.verdicts import Direction
from server.store.database import Store, database_url
from tests.support.web import BACKENDS, both_backends

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


def test_the_store_keeps_the_placement_of_the_latest_status(store: Store) -> None:
    placed = Status(state="online", site_id="hq", location="Sảnh B", direction=Direction.IN)
    store.record_status("gate-1", placed, NOW)
    (device,) = store.devices()
    assert (device.site_id, device.location, device.direction) == ("hq", "Sảnh B", "in")


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Path | URL:
    """A database with no tables yet (on PostgreSQL not a copy of the migrated template)."""
    return both_backends(request, tmp_path)


def test_an_older_database_gains_the_placement_columns(empty_url: Path | URL) -> None:
    first_shipped = MetaData()  # the devices table as it first shipped
    devices = Table(
        "devices",
        first_shipped,
        Column("device_id", String(64), primary_key=True),
        Column("state", String(16)),
        Column("status_ts", DateTime(timezone=True)),
        Column("status_received_at", DateTime(timezone=True)),
        Column("version", String(200), nullable=False),
        Column("boot_id", String(64), nullable=False),
        Column("faults", JSON, nullable=False),
        Column("last_seen", DateTime(timezone=True)),
        Column("telemetry", JSON),
        Column("telemetry_at", DateTime(timezone=True)),
    )
    engine = create_engine(database_url(empty_url))
    try:
        with engine.begin() as conn:
            first_shipped.create_all(conn)
            conn.execute(
                insert(devices).values(
                    device_id="gate-old", state="online", version="0.1", boot_id="b", faults=[]
                )
            )
    finally:
        engine.dispose()
    with Store(empty_url) as store:
        (device,) = store.devices()
        assert (device.device_id, device.site_id, device.location) == ("gate-old", "", "")
