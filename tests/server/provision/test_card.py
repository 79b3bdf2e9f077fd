"""`gatescan provision`: the card's files, judged by cloud-init's own schema, by our models of
what that schema does not cover, by systemd's analyzer and by the gate's own config loader; the
secrets kept to 0600 files and out of every command line; bad inputs refused with a clear line."""

from __future__ import annotations

import shlex
import stat
from pathlib import Path

import pytest
import yaml

from firmware_config.errors import ConfigError
from firmware_config.loader import load_config
from protocol.enrolment import ENROLMENT_FILE_NAME, parse_enrolment_code
from server.provision.boot_files import (
    META_DATA,
    NETWORK_CONFIG,
    USER_DATA,
    Card,
    install_commands,
    runcmd_lines,
)
from server.provision.bundle import AGENT_UNIT
from server.provision.cloud_config import check_user_data, cloud_init_schema
from server.provision.network_config import check_network_config, network_config
from server.provision.target import BUNDLE_DIR, CONSTRAINTS_NAME, TARGET
from tests.server.provision.conftest import PSK, SSID, TOKEN, Provision, WrittenCard
from tests.support.units import verify_unit


def written_files(card: WrittenCard) -> dict[str, str]:
    return {
        file["path"]: file["content"]
        for file in yaml.safe_load(card.text(USER_DATA))["write_files"]
    }


def test_provision_writes_the_three_cloud_init_files_and_the_bundle(provision: Provision) -> None:
    card = provision()
    assert card.exit_code == 0, card.stderr
    names = sorted(path.name for path in card.out.iterdir())
    assert names == sorted([USER_DATA, NETWORK_CONFIG, META_DATA, BUNDLE_DIR])
    bundle = sorted(path.name for path in (card.out / BUNDLE_DIR).iterdir())
    assert bundle == [CONSTRAINTS_NAME, "gatescan-0.1.0-py3-none-any.whl"]
    # Each file it wrote is named on stdout, for the technician to copy.
    assert str(card.out / USER_DATA) in card.stdout.splitlines()


def test_cloud_init_accepts_the_generated_user_data(provision: Provision) -> None:
    card = provision()
    verdict = cloud_init_schema(card.out / USER_DATA)
    assert verdict.valid, verdict.said
    assert "Valid cloud-config" in verdict.said


def test_cloud_init_refuses_a_broken_user_data(provision: Provision, tmp_path: Path) -> None:
    """The check can fail: a mode given as a number and a misspelt key inside write_files."""
    text = provision().text(USER_DATA)
    broken = text.replace("permissions: '0600'", "permissions: 600", 1)
    broken = broken.replace("  owner: root:root", "  ownr: root:root", 1)
    assert broken != text
    path = tmp_path / "broken-user-data"
    path.write_text(broken, encoding="utf-8")
    verdict = cloud_init_schema(path)
    assert not verdict.valid
    assert "600 is not of type 'string'" in verdict.said
    assert "'ownr' was unexpected" in verdict.said


def test_our_model_catches_a_misspelt_top_level_key_that_cloud_init_lets_pass(
    provision: Provision, tmp_path: Path
) -> None:
    text = provision().text(USER_DATA).replace("\nwrite_files:", "\nwrite_file:")
    path = tmp_path / "misspelt"
    path.write_text(text, encoding="utf-8")
    assert cloud_init_schema(path).valid  # cloud-init would skip the gate's files silently
    with pytest.raises(ConfigError, match="write_file: unknown key; did you mean 'write_files'"):
        check_user_data(text)


@pytest.mark.parametrize(
    ("fragment", "complaint"),
    [
        ("enable_ssh: yes please\n", "enable_ssh"),
        ("rpi:\n  interfaces:\n    spi: sometimes\n", "rpi.interfaces.spi"),
        ("rpi:\n  interfaces:\n    serial: {console: true, speed: 9600}\n", "speed"),
        ("rpi:\n  enable_rpi_conect: true\n", "rpi.enable_rpi_conect: unknown key"),
    ],
)
def test_our_model_types_the_raspberry_pi_keys(fragment: str, complaint: str) -> None:
    """Debian 12's cloud-init predates Raspberry Pi OS's keys, so their types are ours to check."""
    good = "#cloud-config\nenable_ssh: true\n"
    good += "rpi:\n  interfaces: {spi: false, serial: {console: true}}\n"
    check_user_data(good)
    with pytest.raises(ConfigError, match=complaint):
        check_user_data("#cloud-config\n" + fragment)


def test_user_data_sets_up_the_gate(provision: Provision) -> None:
    data = yaml.safe_load(provision().text(USER_DATA))
    assert data["hostname"] == "gate-hq-01"
    assert set(TARGET.apt_packages) == set(data["packages"])
    assert {"python3-picamera2", "python3-lgpio", "python3-venv"} <= set(data["packages"])
    assert any(name.startswith("libzbar0") for name in data["packages"])
    service = next(user for user in data["users"] if user["name"] == "gatescan")
    assert service["system"] is True
    assert set(service["groups"]) == {"video", "gpio"}
    assert service["lock_passwd"] is True
    assert "default" not in data["users"]  # no image's default user, no default password
    assert data["ssh_pwauth"] is False


def test_the_enrolment_code_goes_beside_the_config_owned_by_the_agent_0600(
    provision: Provision,
) -> None:
    card = provision()
    entries = {file["path"]: file for file in yaml.safe_load(card.text(USER_DATA))["write_files"]}
    code = entries[f"/etc/gatescan/{ENROLMENT_FILE_NAME}"]
    assert code["permissions"] == "0600"
    assert code["owner"] == "gatescan:gatescan"
    assert parse_enrolment_code(code["content"]).token == TOKEN
    assert code["content"].strip() == card.code


def test_the_gate_config_on_the_card_loads_with_the_agents_loader(
    provision: Provision, tmp_path: Path
) -> None:
    toml = written_files(provision())["/etc/gatescan/gate.toml"]
    path = tmp_path / "gate.toml"
    path.write_text(toml, encoding="utf-8")
    config = load_config(path, env={})
    assert config.device_id == "gate-hq-01"
    assert str(config.data_dir) == "/var/lib/gatescan"
    assert config.camera.type == "picamera2"


def test_the_unit_on_the_card_is_the_shipped_one_and_systemd_verifies_it(
    provision: Provision, tmp_path: Path
) -> None:
    unit = written_files(provision())["/etc/systemd/system/gatescan-agent.service"]
    assert unit == AGENT_UNIT.read_text(encoding="utf-8")
    assert verify_unit(tmp_path / "root", "gatescan-agent.service", unit) == ""
    broken = unit.replace("ProtectHome=yes", "ProtectHom=yes")
    assert "Unknown key 'ProtectHom'" in verify_unit(tmp_path / "root2", "x.service", broken)


def test_first_boot_installs_the_bundled_wheel_by_its_path_into_a_release_venv(
    provision: Provision,
) -> None:
    lines = runcmd_lines(provision().text(USER_DATA))
    assert lines[0] == "set -e"  # a failed step stops the rest (no `current` on a broken venv)
    commands = [shlex.split(line) for line in lines[1:]]
    venv = next(command for command in commands if command[1:3] == ["-m", "venv"])
    assert venv[3:] == ["--system-site-packages", "/opt/gatescan/releases/0.1.0"]
    pip = next(
        command
        for command in commands
        if command[:2] == ["/opt/gatescan/releases/0.1.0/bin/pip", "install"]
    )
    assert pip[pip.index("--constraint") + 1] == f"/boot/firmware/gatescan/{CONSTRAINTS_NAME}"
    assert pip[-1] == "/boot/firmware/gatescan/gatescan-0.1.0-py3-none-any.whl[device,fast]"
    assert not any(arg.startswith("gatescan[") or arg == "gatescan" for arg in pip)
    order = [command[0] for command in commands]
    link = commands[order.index("ln")]
    assert link == ["ln", "-sfn", "/opt/gatescan/releases/0.1.0", "/opt/gatescan/current"]
    assert order.index("ln") > commands.index(pip)
    assert commands[-1] == ["systemctl", "enable", "--now", "gatescan-agent.service"]
    assert "--no-index" not in pip  # the dependencies come from PyPI unless bundled


def test_with_the_dependencies_bundled_first_boot_asks_no_index() -> None:
    network = network_config(None, None, "VN")
    card = Card("gate-a", "code", network, "gatescan-0.1.0-py3-none-any.whl", "0.1.0", offline=True)
    (pip,) = [
        step for step in install_commands(card) if isinstance(step, list) and "pip" in step[0]
    ]
    assert pip[pip.index("--no-index") + 1 : pip.index("--no-index") + 3] == [
        "--find-links",
        "/boot/firmware/gatescan",
    ]


def test_secrets_are_only_in_0600_files_and_never_on_a_command_line(
    provision: Provision,
) -> None:
    card = provision()
    holders = []
    for path in sorted(card.out.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if TOKEN.encode() in data or PSK.encode() in data:
                holders.append(path.name)
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert holders == [NETWORK_CONFIG, USER_DATA]
    user_data = card.text(USER_DATA)
    assert PSK not in user_data  # the passphrase is in network-config alone
    for line in runcmd_lines(user_data):
        assert TOKEN not in line and PSK not in line, line
    assert TOKEN not in card.stdout + card.stderr and PSK not in card.stdout + card.stderr


def test_network_config_joins_the_wifi_with_the_passphrase_from_the_file(
    provision: Provision,
) -> None:
    network = check_network_config(provision().text(NETWORK_CONFIG)).network
    assert network.version == 2
    wifi = network.wifis["wlan0"]
    assert wifi.access_points[SSID].password == PSK
    assert wifi.regulatory_domain == "VN"
    assert network.ethernets["eth0"].dhcp4


def test_without_wifi_the_network_config_is_wired_only_and_not_secret(
    provision: Provision,
) -> None:
    card = provision(wifi=False, ssh=False)
    assert card.exit_code == 0, card.stderr
    assert check_network_config(card.text(NETWORK_CONFIG)).network.wifis == {}
    assert stat.S_IMODE((card.out / NETWORK_CONFIG).stat().st_mode) == 0o644
    data = yaml.safe_load(card.text(USER_DATA))
    assert [user["name"] for user in data["users"]] == ["gatescan"]  # no login at all
    assert "enable_ssh" not in data


def test_an_ssh_key_adds_a_key_only_admin_login(provision: Provision) -> None:
    data = yaml.safe_load(provision().text(USER_DATA))
    admin = next(user for user in data["users"] if user["name"] == "gateadmin")
    assert admin["ssh_authorized_keys"][0].startswith("ssh-ed25519 AAAA")
    assert admin["lock_passwd"] is True
    assert data["enable_ssh"] is True


def test_our_network_model_refuses_a_misspelt_key() -> None:
    text = "network:\n  version: 2\n  wifis:\n    wlan0:\n      regulatory-domain: VN\n"
    text += "      acess-points: {x: {password: '12345678'}}\n"
    with pytest.raises(ConfigError, match="acess-points: unknown key"):
        check_network_config(text)


def test_meta_data_names_the_gate_and_a_fresh_instance(provision: Provision) -> None:
    first = yaml.safe_load(provision().text(META_DATA))
    second = yaml.safe_load(provision().text(META_DATA))
    assert first["local-hostname"] == "gate-hq-01"
    assert first["instance-id"].startswith("gatescan-gate-hq-01-")
    assert first["instance-id"] != second["instance-id"]  # a re-written card is a new first boot


# --- bad inputs ----------------------------------------------------------------------------------


def rewrite(inputs: Path, name: str, text: str) -> None:
    (inputs / name).write_text(text, encoding="utf-8")


@pytest.mark.parametrize(
    ("gate", "complaint"),
    [
        ("hq/01", "is not a gate id"),
        ("gate_hq", "also the Pi's hostname"),
        ("-gate", "is not a gate id"),
    ],
)
def test_a_gate_id_that_cannot_be_a_hostname_is_refused(
    provision: Provision, gate: str, complaint: str
) -> None:
    card = provision(gate=gate)
    assert card.exit_code == 2
    assert complaint in card.stderr
    assert not card.out.exists()  # nothing is written before every input is good


def test_a_missing_passphrase_file_is_named(provision: Provision, inputs: Path) -> None:
    (inputs / "psk").unlink()
    card = provision()
    assert card.exit_code == 2
    assert f"--wifi-psk-file {inputs / 'psk'}: no such file" in card.stderr


def test_a_passphrase_wpa2_cannot_use_is_refused_without_showing_it(
    provision: Provision, inputs: Path
) -> None:
    rewrite(inputs, "psk", "short7\n")
    card = provision()
    assert card.exit_code == 2
    assert "8 to 63 printable ASCII characters" in card.stderr
    assert "short7" not in card.stderr


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        (("--wifi-country", "vn"), "--wifi-country 'vn': two capital letters"),
        (("--wifi-ssid", "x" * 33), "a Wi-Fi name is 1 to 32 bytes long"),
    ],
)
def test_a_wifi_name_or_country_wifi_cannot_use_is_refused(
    provision: Provision, extra: tuple[str, str], complaint: str
) -> None:
    card = provision(*extra)
    assert card.exit_code == 2
    assert complaint in card.stderr


def test_an_ssid_without_a_passphrase_file_is_refused(provision: Provision) -> None:
    card = provision("--wifi-ssid", "HQ", wifi=False)
    assert card.exit_code == 2
    assert "--wifi-ssid and --wifi-psk-file go together" in card.stderr


@pytest.mark.parametrize(
    ("key", "complaint"),
    [
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
            "-----END OPENSSH PRIVATE KEY-----\n",
            "is a private key: give its public half",
        ),
        ("hello there\n", "is not an OpenSSH public key"),
        ("ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAAB tech@lap\n", "the key data is damaged"),
        ("ssh-ed25519 not-base64!! tech@lap\n", "the key data is damaged"),
    ],
)
def test_an_ssh_key_file_that_is_not_a_public_key_is_refused(
    provision: Provision, inputs: Path, key: str, complaint: str
) -> None:
    rewrite(inputs, "tech.pub", key)
    card = provision()
    assert card.exit_code == 2
    assert complaint in card.stderr
    assert "b3BlbnNzaC1rZXktdjEAAAAA" not in card.stderr


def test_a_file_that_is_not_an_enrolment_code_is_refused(
    provision: Provision, inputs: Path
) -> None:
    rewrite(inputs, "code.txt", "GATESCAN-ENROL/1?server=http%3A%2F%2Fbroker.lan&token=x&ca=y\n")
    card = provision()
    assert card.exit_code == 2
    assert "--enrolment-code-file" in card.stderr and "https://" in card.stderr


def test_without_an_enrolment_code_it_says_where_to_get_one(provision: Provision) -> None:
    card = provision(code=False)
    assert card.exit_code == 2
    assert "no enrolment code: give --config server.toml" in card.stderr
    assert "--enrolment-code-file FILE" in card.stderr
    assert "gatescan gate add gate-hq-01 --site SITE" in card.stderr


def test_a_missing_enrolment_code_file_is_named(provision: Provision, inputs: Path) -> None:
    (inputs / "code.txt").unlink()
    card = provision()
    assert card.exit_code == 2
    assert f"--enrolment-code-file {inputs / 'code.txt'}: no such file" in card.stderr
