"""Setup mode is exactly: no broker given and no identity stored. An identity wins over the config
for who the gate is and how it reaches its broker, and leaves the rest of the config alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.app import needs_enrolment, with_identity
from device.enrolment.identity import load_identity, store_identity
from firmware_config.loader import ConfigOverrides, load_config
from firmware_config.schema import GateConfig
from protocol.enrolment import EnrolmentGrant
from protocol.verdicts import Direction

GRANT = EnrolmentGrant(
    device_id="gate-hq-07",
    site_id="hq",
    location="Sảnh B",
    direction=Direction.OUT,
    broker_url="mqtts://broker.lan:8883",
    username="gate-hq-07",
    password="granted-password-123",
    ca_pem="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
)


def config_in(tmp_path: Path, text: str = "", broker: str | None = None) -> GateConfig:
    path = tmp_path / "gate.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n' + text)
    return load_config(path, overrides=ConfigOverrides(broker=broker), env={})


@pytest.mark.parametrize(
    ("text", "broker", "enrolled", "setup"),
    [
        ("", None, False, True),  # nothing: setup mode
        ("", "mqtt://127.0.0.1:1883", False, False),  # --broker: runs as today
        ('[mqtt]\nbroker = "mqtt://127.0.0.1"\n', None, False, False),  # mqtt.broker
        ("", None, True, False),  # an identity: runs as it
        ("", "mqtt://127.0.0.1:1883", True, False),
    ],
)
def test_setup_mode_is_no_broker_and_no_identity(
    tmp_path: Path, text: str, broker: str | None, enrolled: bool, setup: bool
) -> None:
    config = config_in(tmp_path, text, broker)
    if enrolled:
        store_identity(config.data_dir, GRANT)
    assert needs_enrolment(config, load_identity(config.data_dir)) is setup


def test_an_identity_is_who_the_gate_is_and_the_rest_of_the_config_stays(tmp_path: Path) -> None:
    config = config_in(
        tmp_path,
        'device_id = "gate-from-file"\nsite_id = "old"\n[policy]\nmode = "access"\n'
        '[mqtt]\nbroker = "mqtt://10.0.0.9"\nusername = "someone"\nkeepalive = 30\n',
    )
    identity = store_identity(config.data_dir, GRANT)
    gate = with_identity(config, identity)
    assert (gate.device_id, gate.site_id, gate.location, gate.direction) == (
        "gate-hq-07",
        "hq",
        "Sảnh B",
        Direction.OUT,
    )
    assert (gate.mqtt.broker, gate.mqtt.username, gate.mqtt.password()) == (
        "mqtts://broker.lan:8883",
        "gate-hq-07",
        "granted-password-123",
    )
    assert gate.mqtt.ca_file == identity.ca_file
    assert gate.mqtt.keepalive == 30 and gate.policy.mode == "access"  # the config's own
