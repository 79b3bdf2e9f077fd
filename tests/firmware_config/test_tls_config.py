"""The gate's TLS settings (mqtt.ca_file, cert_file, key_file): paths relative to the file,
files checked at load time, and a technician's mistakes named with the key to fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from firmware_config.errors import ConfigError
from firmware_config.loader import load_config
from protocol.broker_tls import BrokerTls
from server.site.certificates import (
    issue_client_certificate,
    new_authority,
    write_certificate,
    write_private_key,
)

NO_ENV: dict[str, str] = {}


def gate_toml(folder: Path, mqtt: str) -> Path:
    path = folder / "gate.toml"
    path.write_text('device_id = "gate-a"\n[mqtt]\n' + textwrap.dedent(mqtt), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=NO_ENV)
    return str(caught.value).splitlines()


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    authority = new_authority("test CA")
    write_certificate(tmp_path / "ca.crt", authority.certificate)
    client = issue_client_certificate(authority, "gate-a")
    write_certificate(tmp_path / "gate.crt", client.certificate)
    write_private_key(tmp_path / "gate.key", client.key)
    return tmp_path / "ca.crt"


def test_the_ca_and_client_files_are_relative_to_the_config_and_reach_the_uplink(
    tmp_path: Path, ca: Path
) -> None:
    config = load_config(
        gate_toml(tmp_path, """\
            broker = "mqtts://broker.lan"
            ca_file = "ca.crt"
            cert_file = "gate.crt"
            key_file = "gate.key"
        """),
        env=NO_ENV,
    )  # fmt: skip

    assert config.mqtt.tls == BrokerTls(ca, tmp_path / "gate.crt", tmp_path / "gate.key")


def test_a_ca_file_with_a_plain_broker_url_is_an_error_naming_the_fix(
    tmp_path: Path, ca: Path
) -> None:
    path = gate_toml(tmp_path, 'broker = "mqtt://broker.lan:1883"\nca_file = "ca.crt"\n')

    assert problems(path) == [
        f"{path}: mqtt.ca_file: ca_file is set but the broker is not mqtts:// (no TLS); "
        "write mqtts://host:port"
    ]


def test_a_missing_ca_file_is_named_at_load_time(tmp_path: Path) -> None:
    path = gate_toml(tmp_path, 'broker = "mqtts://broker.lan"\nca_file = "ca.crt"\n')

    assert problems(path) == [f"{path}: mqtt.ca_file: CA file {tmp_path / 'ca.crt'} does not exist"]


def test_a_ca_file_that_is_not_a_certificate_is_named(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("not a certificate\n")
    path = gate_toml(tmp_path, 'broker = "mqtts://broker.lan"\nca_file = "ca.crt"\n')

    [line] = problems(path)

    assert line.startswith(f"{path}: mqtt.ca_file: CA file: {tmp_path / 'ca.crt'} holds no PEM")


def test_a_key_without_its_certificate_is_refused(tmp_path: Path, ca: Path) -> None:
    path = gate_toml(
        tmp_path, 'broker = "mqtts://b.lan"\nca_file = "ca.crt"\nkey_file = "gate.key"\n'
    )

    assert problems(path) == [
        f"{path}: mqtt.key_file: a key file needs its certificate: set mqtt.cert_file too"
    ]


def test_a_misspelt_tls_key_suggests_the_right_one(tmp_path: Path, ca: Path) -> None:
    path = gate_toml(tmp_path, 'broker = "mqtts://b.lan"\ncafile = "ca.crt"\n')

    assert problems(path) == [f"{path}: mqtt.cafile: unknown key; did you mean 'ca_file'?"]
