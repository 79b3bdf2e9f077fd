"""The machine's readings in `Telemetry` (added within v1): an older gate's telemetry reads on a
newer server, a newer gate's on an older server, and what a field may hold."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, create_model

from protocol.messages import MessageError, Telemetry, parse_message
from protocol.topics import Topic

ADDED = (
    "addresses",
    "wifi_signal_dbm",
    "disk_free_bytes",
    "disk_total_bytes",
    "cpu_temp_c",
    "throttling",
    "system_uptime_s",
    "config_hash",
    "policy_version",
    "policy_key_ids",
    "list_versions",
    "update_result",
)
OLDER_GATE = {
    "ts": "2026-11-26T01:12:28Z",
    "uptime_s": 61.0,
    "fps": 10.0,
    "decode_ms": 3.0,
    "outbox_depth": 0,
    "clock_synced": True,
    "version": "0.1.0",
}
MACHINE: dict[str, Any] = {
    "addresses": [
        {"interface": "wlan0", "address": "192.168.1.57"},
        {"interface": "wlan0", "address": "2001:0db8:0:10:5e2e:1c5a:3b7d:9f10"},
    ],
    "wifi_signal_dbm": -56,
    "disk_free_bytes": 25_000_000_000,
    "disk_total_bytes": 31_000_000_000,
    "cpu_temp_c": 52.6,
    "throttling": ["under_voltage_occurred"],
    "system_uptime_s": 86523.41,
    "config_hash": "0123456789abcdef",
    "policy_version": 41,
    "policy_key_ids": [1, 2],
    "list_versions": {"allow": 41, "revoked": 12},
    "update_result": {
        "outcome": "update_failed",
        "version": "0.3.0",
        "from_version": "0.2.0",
        "reason": "no processed frame within 60 s: switched back",
        "at": "2026-11-26T01:10:00Z",
    },
}


def older_server_telemetry() -> type[BaseModel]:
    """Telemetry as a server from before these fields reads it: the same model without them,
    with the protocol's rule that readers ignore unknown fields."""
    kept = {
        name: (field.annotation, field)
        for name, field in Telemetry.model_fields.items()
        if name not in ADDED
    }
    return create_model(  # type: ignore[call-overload, no-any-return]
        "OlderTelemetry", __config__=Telemetry.model_config, **kept
    )


def encoded(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields).encode()


def test_an_older_gates_telemetry_reads_with_every_reading_unknown() -> None:
    telemetry = parse_message(Topic.TELEMETRY, encoded(OLDER_GATE))

    assert isinstance(telemetry, Telemetry)
    assert all(getattr(telemetry, name) is None for name in ADDED)


def test_a_newer_gates_telemetry_reads_on_this_server_and_on_an_older_one() -> None:
    newer = parse_message(Topic.TELEMETRY, encoded({**OLDER_GATE, **MACHINE}))
    older_model = older_server_telemetry()

    assert isinstance(newer, Telemetry)
    assert newer.cpu_temp_c == 52.6 and newer.wifi_signal_dbm == -56
    assert [a.address for a in newer.addresses or []] == [
        "192.168.1.57",
        "2001:db8:0:10:5e2e:1c5a:3b7d:9f10",  # its short form
    ]
    assert newer.list_versions == {"allow": 41, "revoked": 12}
    sent = newer.to_json()
    assert Telemetry.model_validate_json(sent) == newer
    on_older = older_model.model_validate_json(sent)
    assert on_older.model_dump() == {
        name: value for name, value in newer.model_dump().items() if name not in ADDED
    }
    assert set(older_model.model_fields) | set(ADDED) == set(Telemetry.model_fields)


@pytest.mark.parametrize(
    "wrong",
    [
        {"addresses": [{"interface": "wlan0", "address": "not-an-address"}]},
        {"addresses": [{"interface": "a name far too long", "address": "10.0.0.1"}]},
        {"wifi_signal_dbm": 20},
        {"wifi_signal_dbm": "-56"},
        {"disk_free_bytes": -1},
        {"config_hash": "0123456789ABCDEF"},
        {"policy_version": 0},
        {"policy_key_ids": [0]},
        {"throttling": ["under\nvoltage"]},
        {"update_result": {"outcome": "updated"}},
        {"update_result": {"outcome": "updated", "version": "0.3.0", "reason": "a\nb"}},
    ],
)
def test_readings_that_break_their_rule_are_refused(wrong: dict[str, Any]) -> None:
    with pytest.raises(MessageError) as refused:
        parse_message(Topic.TELEMETRY, encoded({**OLDER_GATE, **MACHINE, **wrong}))
    assert refused.value.reason == "schema"
