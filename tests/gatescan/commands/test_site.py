"""`gatescan site init DIR` as a technician runs it (a real process), and `gatescan server
--config` / `collector --config` reading what it wrote: files, modes, refusals, clear errors."""

from __future__ import annotations

import ipaddress
import os
import stat
import tomllib
from pathlib import Path

import pytest
from cryptography import x509

from server.site.server_config import load_server_config
from tests.support.cli import run_gatescan

EXPECTED_FILES = {
    "ca.key": 0o600,
    "ca.crt": 0o644,
    "broker.key": 0o600,
    "broker.crt": 0o644,
    "collector.password": 0o600,
    "mosquitto.passwd": 0o600,
    "dynsec-admin.password": 0o600,
    "enrol.key": 0o600,
    "enrol.crt": 0o644,
    "gatescan.acl": 0o644,
    "mosquitto.conf": 0o644,
    "server.toml": 0o644,
}


def site_init(folder: Path, *flags: str) -> tuple[int, str]:
    done = run_gatescan(["site", "init", str(folder), *flags], cwd=folder.parent)
    return done.returncode, done.stdout + done.stderr


def test_site_init_writes_the_installation_with_private_keys_0600(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    code, output = site_init(folder, "--host", "broker.lan", "--host", "192.0.2.10",
                             "--mqtt-port", "8884", "--web-port", "8081")  # fmt: skip

    assert code == 0, output
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in folder.iterdir()}
    assert modes == {**EXPECTED_FILES, "mosquitto-data": 0o700}
    certificate = x509.load_pem_x509_certificate((folder / "broker.crt").read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["broker.lan", "localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address(address) for address in ("192.0.2.10", "127.0.0.1", "::1")
    ]
    ca = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
    certificate.verify_directly_issued_by(ca)
    conf = (folder / "mosquitto.conf").read_text()
    assert "listener 8884\n" in conf and "tls_version tlsv1.2\n" in conf
    password = (folder / "collector.password").read_text().strip()
    assert len(password) >= 32
    admin = (folder / "dynsec-admin.password").read_text().strip()
    assert len(admin) >= 40
    dynsec = folder / "mosquitto-data" / "dynamic-security.json"
    assert stat.S_IMODE(dynsec.stat().st_mode) == 0o600
    for name in ("server.toml", "mosquitto.conf", "gatescan.acl", "ca.crt", "mosquitto.passwd"):
        for secret in (password, admin):
            assert secret not in (folder / name).read_text(), f"a password is in {name}"
    for secret in (password, admin):
        assert secret not in dynsec.read_text() and secret not in output
    assert "mqtts://broker.lan:8884" in output
    enrol = x509.load_pem_x509_certificate((folder / "enrol.crt").read_bytes())
    enrol.verify_directly_issued_by(ca)
    enrol_names = enrol.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert enrol_names == names


def test_server_toml_names_the_tls_broker_the_ca_and_the_password_file(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    assert (
        site_init(folder, "--host", "broker.lan", "--web-port", "8090", "--enrol-port", "8444")[0]
        == 0
    )
    raw = tomllib.loads((folder / "server.toml").read_text())

    config = load_server_config(folder / "server.toml")

    assert "password" not in raw["mqtt"]
    assert '\n# public_url = "https://' in (folder / "server.toml").read_text(), "to uncomment"
    uncommented = (folder / "server.toml").read_text().replace("# public_url", "public_url")
    (folder / "uncommented.toml").write_text(uncommented)
    assert load_server_config(folder / "uncommented.toml").public_url is not None
    assert config.flag_values() == {
        "db": str(folder / "gatescan.db"),
        "listen": "127.0.0.1:8090",
        "broker": "mqtts://localhost:8883",  # the server sits beside the broker
        "username": "collector",
        "client_id": "collector",  # the id the broker takes anyway: a restart resumes the session
        "password_file": folder / "collector.password",
        "ca_file": folder / "ca.crt",
        "enrol_listen": "0.0.0.0:8444",
        "enrol_cert_file": folder / "enrol.crt",
        "enrol_key_file": folder / "enrol.key",
        "enrol_url": "https://broker.lan:8444",  # --host's name: what the gates reach
        "gate_broker": "mqtts://broker.lan:8883",
        "admin_username": "gatescan-admin",
        "admin_password_file": folder / "dynsec-admin.password",
    }


def test_site_init_refuses_to_replace_an_installation_unless_forced(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    assert site_init(folder, "--host", "broker.lan")[0] == 0
    ca_before = (folder / "ca.crt").read_bytes()

    code, output = site_init(folder, "--host", "broker.lan")

    assert code == 2
    assert "already holds an installation" in output and "--force" in output
    assert "Traceback" not in output
    assert (folder / "ca.crt").read_bytes() == ca_before
    code, output = site_init(folder, "--host", "broker.lan", "--force")
    assert code == 0, output
    assert (folder / "ca.crt").read_bytes() != ca_before
    assert stat.S_IMODE((folder / "ca.key").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--host", "broker lan"], "--host 'broker lan' is not a host name or IP address"),
        (["--host", "mqtts://broker.lan"], "is not a host name or IP address"),
        (["--host=-broker"], "is not a host name or IP address"),
        (["--host", "b.lan", "--mqtt-port", "70000"], "--mqtt-port 70000: a port is a number"),
        (["--host", "b.lan", "--web-port", "0"], "--web-port 0: a port is a number"),
        (["--host", "b.lan", "--web-port", "8883"], "the ports must differ"),
        (["--host", "b.lan", "--mqtt-port", "x"], "invalid int value: 'x'"),
    ],
    ids=["space", "url", "dash", "port-too-big", "port-0", "same-port", "not-a-number"],
)
def test_a_bad_host_or_port_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    folder = tmp_path / "site"

    code, output = site_init(folder, *flags)

    assert code == 2
    assert message in output
    assert "Traceback" not in output
    assert not folder.exists()


def test_a_file_where_the_folder_should_be_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "site").write_text("not a folder")

    code, output = site_init(tmp_path / "site", "--host", "broker.lan")

    assert code == 2 and "is a file, not a folder" in output


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files to the mosquitto user")
def test_as_root_the_brokers_own_files_go_to_the_mosquitto_user(tmp_path: Path) -> None:
    import pwd

    folder = tmp_path / "site"
    assert site_init(folder, "--host", "broker.lan")[0] == 0
    broker = pwd.getpwnam("mosquitto").pw_uid

    owners = {path.name: path.stat().st_uid for path in folder.iterdir()}

    assert {name for name, uid in owners.items() if uid == broker} == {
        "broker.key", "broker.crt", "mosquitto.passwd", "mosquitto-data"
    }  # fmt: skip
    assert owners["ca.key"] == 0 and owners["collector.password"] == 0


@pytest.mark.parametrize("command", ["server", "collector"])
def test_a_typo_in_server_toml_names_the_key_and_the_likely_one(
    tmp_path: Path, command: str
) -> None:
    config = tmp_path / "server.toml"
    config.write_text(
        'listen = "127.0.0.1:8080"\n[mqtt]\nbroker = "mqtts://b.lan"\nca_fille = "ca.crt"\n'
    )

    done = run_gatescan([command, "--config", str(config)], cwd=tmp_path)

    assert done.returncode == 2
    assert f"{config}: mqtt.ca_fille: unknown key; did you mean 'ca_file'?" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_password_in_server_toml_is_refused_with_where_it_goes(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text('[mqtt]\npassword = "hunter2"\n')

    done = run_gatescan(["server", "--config", str(config)], cwd=tmp_path)

    assert done.returncode == 2
    assert "mqtt.password: a password never goes in the config file" in done.stderr
    assert "hunter2" not in done.stderr


def test_tls_files_with_a_plain_broker_url_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text('[mqtt]\nbroker = "mqtt://b.lan:1883"\nca_file = "ca.crt"\n')

    done = run_gatescan(["collector", "--config", str(config)], cwd=tmp_path)

    assert done.returncode == 2
    assert "mqtt.ca_file: ca_file is set but the broker is not mqtts://" in done.stderr


def test_a_missing_ca_file_is_named_before_anything_starts(tmp_path: Path) -> None:
    assert site_init(tmp_path / "site", "--host", "broker.lan")[0] == 0
    (tmp_path / "site" / "ca.crt").unlink()

    done = run_gatescan(["collector", "--config", str(tmp_path / "site" / "server.toml")],
                        cwd=tmp_path)  # fmt: skip

    assert done.returncode == 2
    assert f"CA file {tmp_path / 'site' / 'ca.crt'} does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_flag_beats_the_file(tmp_path: Path) -> None:
    """The file's broker is mqtts:// with a CA file; --broker mqtt://... on the command line
    wins, and then the file's CA file is refused for a plain URL: the flag was read."""
    assert site_init(tmp_path / "site", "--host", "broker.lan")[0] == 0

    done = run_gatescan(["collector", "--config", str(tmp_path / "site" / "server.toml"),
                         "--broker", "mqtt://127.0.0.1:1"], cwd=tmp_path)  # fmt: skip

    assert done.returncode == 2
    assert "--broker mqtt://127.0.0.1:1 is not mqtts://" in done.stderr


def test_loopback_port_0_leaves_no_plain_listener_at_all(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    assert site_init(folder, "--host", "broker.lan", "--loopback-port", "0")[0] == 0

    listeners = [
        line for line in (folder / "mosquitto.conf").read_text().splitlines()
        if line.startswith("listener ")
    ]  # fmt: skip

    assert listeners == ["listener 8883"]


def test_site_without_an_action_shows_its_usage(tmp_path: Path) -> None:
    done = run_gatescan(["site"], cwd=tmp_path)

    assert done.returncode == 2
    assert "init" in done.stderr and "Traceback" not in done.stderr
