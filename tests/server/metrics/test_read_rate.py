"""A gate's read rate from its telemetry, end to end: the message parsed as the collector parses
it, stored in a real SQLite file, read back by the fleet report, shown on the fleet page (both
languages) and scraped from /metrics (FastAPI's TestClient, prometheus_client's parser)."""

from __future__ import annotations

import json
import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from protocol.messages import Status, Telemetry, parse_message
from protocol.topics import Topic
from server.accounts.users import Role
from server.dashboard.reports.fleet import fleet_status
from server.store.database import Store
from tests.server.metrics.test_routes import scrape
from tests.support.web import START, MovableClock, bearer, log_in

TELEMETRY = {
    "ts": START.isoformat(),
    "uptime_s": 60.0,
    "fps": 12.5,
    "decode_ms": 20.0,
    "outbox_depth": 0,
    "clock_synced": True,
    "version": "t",
}
# gate-1 read 3 of the 4 frames where a code was likely; gate-2's decoder cannot tell (zbar
# alone, or an older gate); gate-3 had no code in view over its interval.
COUNTS = {
    "gate-1": {"frames_with_code": 4, "frames_read": 3},
    "gate-2": {},
    "gate-3": {"frames_with_code": 0, "frames_read": 0},
}


def _report(store: Store) -> None:
    for device, counts in COUNTS.items():
        store.record_status(device, Status(state="online", ts=START, site_id="hq"), START)
        payload = json.dumps({**TELEMETRY, **counts}).encode()
        telemetry = parse_message(Topic.TELEMETRY, payload)
        assert isinstance(telemetry, Telemetry)
        store.record_telemetry(device, telemetry, START)


def test_the_read_rate_is_stored_and_reported_per_gate(store: Store) -> None:
    _report(store)

    gates = {gate.device_id: gate for gate in fleet_status(store, START, 120)}

    assert gates["gate-1"].read_ratio == 0.75
    assert (gates["gate-1"].frames_read, gates["gate-1"].frames_with_code) == (3, 4)
    assert gates["gate-2"].read_ratio is None  # cannot tell: no rate, never 100 %
    assert gates["gate-3"].read_ratio is None  # nothing to count


def test_the_read_ratio_is_a_gauge_only_for_gates_with_frames_to_count(
    app: FastAPI, store: Store, client: TestClient, clock: MovableClock
) -> None:
    _report(store)
    clock.advance(5)

    found = scrape(client, bearer(app, Role.METRICS))

    def ratio(device: str) -> float | None:
        return found.get(("gatescan_gate_read_ratio", (("device_id", device), ("site", "hq"))))

    assert ratio("gate-1") == 0.75
    assert ratio("gate-2") is None and ratio("gate-3") is None


@pytest.mark.parametrize(("language", "header"), [("en", "Read rate"), ("vi", "Tỷ lệ đọc")])
def test_the_fleet_page_shows_each_gates_read_rate_or_a_dash(
    store: Store, client: TestClient, clock: MovableClock, language: str, header: str
) -> None:
    _report(store)
    clock.advance(5)
    log_in(client, "viewer")
    client.cookies.set("gatescan_lang", language)

    page = client.get("/").text

    assert f'<th class="num">{header}</th>' in page
    cells = dict(
        re.findall(
            r'<tr data-gate="([^"]+)".*?<td class="num read-rate"[^>]*>([^<]*)</td>', page, re.S
        )
    )
    assert cells == {"gate-1": "75%", "gate-2": "—", "gate-3": "—"}
    assert re.search(r'title="[^"]*3[^"]*4[^"]*">75%<', page)
    assert client.get("/live/fleet").text.count('class="num read-rate"') == 3
