"""A gate's machine on the dashboard (issue 17), end to end on SQLite and PostgreSQL: telemetry
payloads parsed as the collector parses them, stored through the real store, read back by the
fleet report, shown in the fleet page's system column and on the gate's page (both languages),
in the JSON fleet API and as /metrics gauges. What a gate sends is untrusted: markup the wire
contract lets through (a throttling label) is shown as text, markup it refuses (config hash,
addresses) never reaches the store; an older gate's missing readings are "—"."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import URL, update

from device.system.facts import THROTTLE_BITS
from protocol.messages import MessageError, Status, Telemetry, parse_message
from protocol.topics import Topic
from server.accounts.users import Role
from server.dashboard.i18n.translate import CATALOGUES
from server.dashboard.reports.fleet import fleet_status
from server.dashboard.reports.gate_system import THROTTLING_NOW, WARNINGS, gate_system
from server.store.database import Store
from server.store.tables import devices_table
from tests.server.metrics.test_routes import scrape
from tests.support.web import BACKENDS, START, MovableClock, bearer, both_backends, log_in

GIB = 1 << 30
HOSTILE = "<img src=x onerror=alert(1)>"  # a plain-text label: the wire contract lets it through
BASE = {
    "ts": START.isoformat(),
    "uptime_s": 60.0,
    "fps": 12.5,
    "decode_ms": 20.0,
    "outbox_depth": 0,
    "clock_synced": True,
    "version": "1.9.0",
}
READINGS: dict[str, dict[str, Any]] = {
    # All well: nothing to warn of.
    "gate-ok": {
        "addresses": [
            {"interface": "wlan0", "address": "192.168.1.40"},
            {"interface": "eth0", "address": "fe80::1"},
        ],
        "wifi_signal_dbm": -58,
        "disk_free_bytes": 20 * GIB,
        "disk_total_bytes": 29 * GIB,
        "cpu_temp_c": 51.5,
        "throttling": [],
        "system_uptime_s": 3 * 86400 + 4 * 3600 + 5 * 60 + 59,
        "config_hash": "0123456789abcdef",
        "policy_version": 42,
        "policy_key_ids": [1, 2],
        "list_versions": {"allow": 40, "block": 42},
        "update_result": {"outcome": "updated", "version": "1.9.0", "from_version": "1.8.2"},
    },
    # Past every threshold, and a throttling bit this server does not know (markup).
    "gate-warn": {
        "addresses": [{"interface": "wlan0", "address": "10.0.0.9"}],
        "wifi_signal_dbm": -80,
        "disk_free_bytes": 800 * (1 << 20),
        "disk_total_bytes": 29 * GIB,
        "cpu_temp_c": 82.0,
        "throttling": ["under_voltage", "throttled_occurred", HOSTILE],
        "system_uptime_s": 120.0,
        "config_hash": "fedcba9876543210",
        "policy_version": 41,
        "policy_key_ids": [],
        "list_versions": {},
        "update_result": {
            "outcome": "update_failed",
            "version": "2.0.0",
            "from_version": "1.9.0",
            "reason": f"not READY within 60 s {HOSTILE}",
        },
    },
    "gate-old": {},  # an older gate: none of the readings
}


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Path | URL:
    return both_backends(request, tmp_path)


def _report(store: Store) -> None:
    for device, readings in READINGS.items():
        store.record_status(device, Status(state="online", ts=START, site_id="hq"), START)
        telemetry = parse_message(Topic.TELEMETRY, json.dumps({**BASE, **readings}).encode())
        assert isinstance(telemetry, Telemetry)
        store.record_telemetry(device, telemetry, START)


@pytest.fixture
def reported(store: Store, clock: MovableClock) -> Store:
    _report(store)
    clock.advance(5)
    return store


def test_the_readings_are_stored_and_reported_with_their_warnings(reported: Store) -> None:
    gates = {gate.device_id: gate.system for gate in fleet_status(reported, START, 120)}

    ok, warn, old = gates["gate-ok"], gates["gate-warn"], gates["gate-old"]
    assert [(a.interface, a.address) for a in ok.addresses or []] == [
        ("wlan0", "192.168.1.40"),
        ("eth0", "fe80::1"),
    ]
    assert (ok.wifi_signal_dbm, ok.wifi_bars(), ok.cpu_temp_c) == (-58, 3, 51.5)
    assert (ok.config_hash, ok.policy_version) == ("0123456789abcdef", 42)
    assert ok.policy_key_ids == [1, 2]
    assert (ok.list_versions, ok.uptime_parts(), ok.warnings) == (
        {"allow": 40, "block": 42},
        (3, 4, 5),
        [],
    )
    assert warn.warnings == ["wifi_weak", "disk_low", "hot", "under_voltage"]
    assert (warn.throttling_now(), warn.throttling_before()) == (
        ["under_voltage"],
        ["throttled_occurred", HOSTILE],
    )
    assert old.model_dump() == {name: None for name in old.model_dump()} | {"warnings": []}


@pytest.mark.parametrize(
    ("told", "warnings"),
    [
        ({"wifi_signal_dbm": -75}, []),
        ({"wifi_signal_dbm": -76}, ["wifi_weak"]),
        ({"disk_free_bytes": GIB, "disk_total_bytes": 16 * GIB}, []),
        ({"disk_free_bytes": GIB - 1}, ["disk_low"]),  # no total told: the GiB alone
        ({"disk_free_bytes": 4 * GIB, "disk_total_bytes": 100 * GIB}, ["disk_low"]),  # 4 %
        ({"disk_free_bytes": 5 * GIB, "disk_total_bytes": 100 * GIB}, []),
        ({"cpu_temp_c": 79.9}, []),
        ({"cpu_temp_c": 80.0}, ["hot"]),
        ({"throttling": ["soft_temp_limit"]}, ["throttled"]),
        ({"throttling": ["freq_capped", "under_voltage"]}, ["under_voltage", "throttled"]),
        ({"throttling": ["under_voltage_occurred", "throttled_occurred"]}, []),  # since boot
    ],
)
def test_the_warning_thresholds(told: dict[str, Any], warnings: list[str]) -> None:
    assert gate_system(told).warnings == warnings


def test_a_stored_reading_the_wire_contract_refuses_is_dropped_and_the_rest_kept() -> None:
    """A row edited by hand (or by an older server) loses only the bad readings."""
    system = gate_system(
        {
            "config_hash": "<b>x</b>",
            "addresses": [{"interface": "<i>", "address": "1.2.3.4"}],
            "wifi_signal_dbm": "-60",
            "cpu_temp_c": 40.0,
        }
    )
    assert (system.config_hash, system.addresses, system.wifi_signal_dbm) == (None, None, None)
    assert system.cpu_temp_c == 40.0


@pytest.mark.parametrize(
    "hostile",
    [
        {"config_hash": "<script>alert(1)</script>"},
        {"addresses": [{"interface": "wlan0", "address": "<b>10.0.0.1</b>"}]},
        {"addresses": [{"interface": "<b>x</b>", "address": "10.0.0.1"}]},
        {"list_versions": {"allow\u202e": 3}},  # a bidi control in a label
    ],
)
def test_markup_the_wire_contract_refuses_never_reaches_the_store(
    hostile: dict[str, Any],
) -> None:
    with pytest.raises(MessageError) as refused:
        parse_message(Topic.TELEMETRY, json.dumps({**BASE, **hostile}).encode())
    assert refused.value.reason == "schema"


def _cells(page: str) -> dict[str, str]:
    """Each gate's system cell in the fleet table, by gate."""
    found = re.findall(r'<tr data-gate="([^"]+)".*?(<td class="system.*?</td>)', page, re.S)
    return dict(found)


@pytest.mark.parametrize(
    ("language", "header", "free"),
    [("en", "System", "20.0 GiB free"), ("vi", "Hệ thống", "trống 20.0 GiB")],
)
def test_the_fleet_page_shows_the_system_column_to_a_technician(
    reported: Store, client: TestClient, language: str, header: str, free: str
) -> None:
    log_in(client, "technician")
    client.cookies.set("gatescan_lang", language)

    page = client.get("/").text

    assert f"<th>{header}</th>" in page
    cells = _cells(page)
    assert set(cells) == set(READINGS)
    assert 'data-warnings=""' in cells["gate-ok"] and "-58 dBm" in cells["gate-ok"]
    assert 'data-bars="3"' in cells["gate-ok"] and cells["gate-ok"].count('<i class="on">') == 3
    assert free in cells["gate-ok"]
    assert "51.5 °C" in cells["gate-ok"] and ' warn"' not in cells["gate-ok"]
    warn = cells["gate-warn"]
    assert 'data-warnings="wifi_weak disk_low hot under_voltage"' in warn
    assert 'class="wifi warn"' in warn and 'class="sub disk warn"' in warn
    assert 'class="sub temp warn"' in warn and "800 MiB" in warn and "82.0 °C" in warn
    assert re.sub(r"\s+", "", re.sub(r"<[^>]+>", "", cells["gate-old"])) == "—"
    assert HOSTILE not in page
    assert client.get("/live/fleet").text.count('<td class="system') == 3
    assert 'href="/gates/gate-warn"' in page


READING_IDS = (
    "addresses",
    "wifi",
    "disk",
    "temperature",
    "throttling",
    "uptime",
    "config-hash",
    "policy-version",
    "policy-keys",
    "list-versions",
    "update-result",
)


def _readings(page: str) -> dict[str, str]:
    """The gate page's readings as text, by their id."""
    found = re.findall(r'<dd id="system-([a-z-]+)"[^>]*>(.*?)</dd>', page, re.S)
    text = {key: " ".join(re.sub(r"<[^>]+>", " ", value).split()) for key, value in found}
    return {key: value.replace(" ,", ",") for key, value in text.items()}


def test_the_gate_page_shows_every_reading_labelled(reported: Store, client: TestClient) -> None:
    log_in(client, "technician")
    client.cookies.set("gatescan_lang", "en")

    ok = client.get("/gates/gate-ok")
    assert ok.status_code == 200
    for label in ("IP addresses", "Wi-Fi signal", "Disk free", "CPU temperature", "Config hash"):
        assert f"<dt>{label}</dt>" in ok.text
    assert _readings(ok.text) == {
        "addresses": "192.168.1.40 (wlan0) fe80::1 (eth0)",
        "wifi": "-58 dBm · 3 of 4 bars",
        "disk": "20.0 GiB free of 29.0 GiB (69.0 %)",
        "temperature": "51.5 °C",
        "throttling": "none",
        "uptime": "3 d 4 h 5 min",
        "config-hash": "0123456789abcdef",
        "policy-version": "42",
        "policy-keys": "1, 2",
        "list-versions": "allow: 40, block: 42",
        "update-result": "updated 1.8.2 → 1.9.0",
    }
    assert 'data-warnings=""' in ok.text

    warn = client.get("/gates/gate-warn").text
    assert HOSTILE not in warn and "&lt;img src=x onerror=alert(1)&gt;" in warn
    assert 'data-warnings="wifi_weak disk_low hot under_voltage"' in warn
    shown = _readings(warn)
    assert shown["throttling"] == (
        "under-voltage now throttled since boot &lt;img src=x onerror=alert(1)&gt;"  # text
    )
    assert (shown["policy-keys"], shown["list-versions"]) == ("none", "none")
    assert shown["update-result"] == (
        "update_failed 1.9.0 → 2.0.0 not READY within 60 s &lt;img src=x onerror=alert(1)&gt;"
    )
    assert "under-voltage: check the power supply" in warn

    old = client.get("/gates/gate-old").text
    assert _readings(old) == dict.fromkeys(READING_IDS, "—")


def test_the_gate_page_in_vietnamese_and_for_an_unknown_gate(
    reported: Store, client: TestClient
) -> None:
    log_in(client, "technician")
    client.cookies.set("gatescan_lang", "vi")
    page = client.get("/gates/gate-warn").text
    assert "<dt>Tín hiệu Wi-Fi</dt>" in page and "<dt>Nhiệt độ CPU</dt>" in page
    assert "Wi-Fi yếu (dưới -75 dBm)" in page
    assert client.get("/gates/gate-nowhere").status_code == 404
    assert client.get("/gates/..%2Fetc").status_code == 404


def test_a_gate_of_another_site_is_not_found_for_a_technician_of_one_site(
    app: FastAPI, reported: Store, client: TestClient
) -> None:
    reported.record_status("gate-far", Status(state="online", ts=START, site_id="far"), START)
    accounts = app.state.web.accounts
    token = accounts.create_token("hq-tech", Role.TECHNICIAN, sites=["hq"])
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/gates/gate-ok", headers=headers).status_code == 200
    assert client.get("/gates/gate-far", headers=headers).status_code == 404
    listed = client.get("/api/v1/devices", headers=headers).json()
    assert sorted(gate["device_id"] for gate in listed) == sorted(READINGS)


def test_the_fleet_api_holds_the_readings(
    app: FastAPI, reported: Store, client: TestClient
) -> None:
    listed = client.get("/api/v1/devices", headers=bearer(app, Role.TECHNICIAN)).json()
    systems = {gate["device_id"]: gate["system"] for gate in listed}
    update = {"reason": "", "at": None} | READINGS["gate-ok"]["update_result"]  # defaults filled
    assert systems["gate-ok"] == {**READINGS["gate-ok"], "update_result": update, "warnings": []}
    assert systems["gate-warn"]["warnings"] == ["wifi_weak", "disk_low", "hot", "under_voltage"]
    assert systems["gate-old"] == {name: None for name in READINGS["gate-ok"]} | {"warnings": []}


def test_wifi_disk_and_temperature_are_gauges(
    app: FastAPI, reported: Store, client: TestClient
) -> None:
    found = scrape(client, bearer(app, Role.METRICS))

    def gauge(name: str, device: str) -> float | None:
        return found.get((name, (("device_id", device), ("site", "hq"))))

    assert gauge("gatescan_gate_wifi_signal_dbm", "gate-ok") == -58
    assert gauge("gatescan_gate_disk_free_bytes", "gate-ok") == 20 * GIB
    assert gauge("gatescan_gate_disk_total_bytes", "gate-ok") == 29 * GIB
    assert gauge("gatescan_gate_cpu_temperature_celsius", "gate-warn") == 82.0
    for name in ("wifi_signal_dbm", "disk_free_bytes", "cpu_temperature_celsius"):
        assert gauge(f"gatescan_gate_{name}", "gate-old") is None  # not told: no sample


def test_a_row_edited_to_hold_markup_is_shown_without_it(
    reported: Store, client: TestClient
) -> None:
    """Past the wire contract (a database edited by hand): the bad readings are dropped, the
    page still renders and holds no markup of theirs."""
    with reported.engine.begin() as conn:
        row = conn.execute(
            devices_table.select().where(devices_table.c.device_id == "gate-ok")
        ).one()
        telemetry = {**row.telemetry, "config_hash": "<script>x()</script>"}
        telemetry["addresses"] = [{"interface": "eth0", "address": "<b>1.2.3.4</b>"}]
        conn.execute(
            update(devices_table)
            .where(devices_table.c.device_id == "gate-ok")
            .values(telemetry=telemetry)
        )
    log_in(client, "technician")
    client.cookies.set("gatescan_lang", "en")
    page = client.get("/gates/gate-ok")
    assert page.status_code == 200
    assert "<script>x()" not in page.text and "<b>1.2.3.4" not in page.text
    shown = _readings(page.text)
    assert (shown["config-hash"], shown["addresses"]) == ("—", "—")
    assert shown["wifi"] == "-58 dBm · 3 of 4 bars"  # the rest kept


def test_every_warning_and_every_throttling_bit_a_gate_sends_has_words() -> None:
    """The bits are the gate's own names (device/system/facts.py); each has words in both
    languages, so only a bit of a newer gate is shown as sent."""
    for language in ("vi", "en"):
        for warning in WARNINGS:
            assert f"warning.{warning}" in CATALOGUES[language]
        for _, bit in THROTTLE_BITS:
            assert f"throttle.{bit}" in CATALOGUES[language]
    now = {bit for _, bit in THROTTLE_BITS if not bit.endswith("_occurred")}
    assert set(THROTTLING_NOW) == now  # every bit true now is warned of
