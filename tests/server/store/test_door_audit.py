"""The door's releases a gate reports, in the audit log (server/store/writes.py), written in the
transaction of the status or telemetry that shows them: a fire alarm as it starts and ends, and
the button's and the dashboard's releases as their counts grow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from protocol.messages import Status, Telemetry
from server.store.audit import AuditLog
from server.store.database import Store

GATE = "gate-1"
T0 = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


def door_rows(store: Store) -> list[tuple[str, str, dict[str, Any]]]:
    rows = AuditLog(store.engine).rows(action="door")
    return [(row.actor, row.subject, row.details) for row in reversed(rows)]


def status(store: Store, faults: list[str], state: str = "online", minute: int = 0) -> None:
    report = Status(state=state, ts=T0, version="t", faults=faults)  # type: ignore[arg-type]
    store.record_status(GATE, report, T0 + timedelta(minutes=minute))


def telemetry(store: Store, uptime: float, button: int = 0, dashboard: int = 0) -> None:
    report = Telemetry(
        ts=T0,
        uptime_s=uptime,
        fps=10.0,
        decode_ms=5.0,
        outbox_depth=0,
        clock_synced=True,
        version="t",
        button_releases=button,
        dashboard_releases=dashboard,
    )
    store.record_telemetry(GATE, report, T0)


def test_a_fire_alarm_is_recorded_as_it_starts_and_as_it_ends(store: Store) -> None:
    status(store, [])
    status(store, ["fire_alarm"])
    status(store, ["fire_alarm", "camera"])  # still on: nothing new
    status(store, [])
    status(store, [], state="offline")  # the last will: says nothing of the alarm
    assert door_rows(store) == [
        ("system", GATE, {"release": "fire_alarm", "active": True}),
        ("system", GATE, {"release": "fire_alarm", "active": False}),
    ]


def test_releases_are_recorded_as_their_counts_grow_and_from_zero_after_a_restart(
    store: Store,
) -> None:
    telemetry(store, uptime=60, button=1)  # the first the server hears: since the gate started
    telemetry(store, uptime=90, button=1)  # unchanged: nothing
    telemetry(store, uptime=120, button=3, dashboard=1)
    telemetry(store, uptime=5, button=1)  # restarted: its counts begin again
    assert [details for _, _, details in door_rows(store)] == [
        {"release": "button", "count": 1, "since_start": 1},
        {"release": "button", "count": 2, "since_start": 3},
        {"release": "dashboard", "count": 1, "since_start": 1},
        {"release": "button", "count": 1, "since_start": 1},
    ]


def test_telemetry_without_releases_writes_no_row(store: Store) -> None:
    for uptime in (30, 60, 90):
        telemetry(store, uptime=uptime)
    status(store, [])
    assert door_rows(store) == []


def test_a_gate_s_release_rows_are_its_site_s(store: Store) -> None:
    report = Status(state="online", ts=T0, version="t", site_id="hq", faults=["fire_alarm"])
    store.record_status(GATE, report, T0)
    telemetry(store, uptime=60, button=1)  # a telemetry names no site: the gate's row does
    rows = AuditLog(store.engine).rows(action="door", sites=frozenset({"hq"}))
    assert [row.details["release"] for row in reversed(rows)] == ["fire_alarm", "button"]
