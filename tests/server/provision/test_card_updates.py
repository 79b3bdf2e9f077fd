"""A provisioned gate can take signed releases later: the card carries the updater's units as
shipped (systemd verifies them) and, with `--release-key`, the release keys the gate trusts;
first boot enables the updater before it starts the agent."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from protocol.release_bundle import parse_trusted_keys
from server.provision.boot_files import USER_DATA, runcmd_lines
from server.provision.bundle import UPDATER_UNIT_FILES
from server.release.signing import keygen
from tests.deploy.test_updater_units import verify
from tests.server.provision.conftest import Provision


def entries(text: str) -> dict[str, dict[str, str]]:
    return {file["path"]: file for file in yaml.safe_load(text)["write_files"]}


def test_the_card_carries_the_updater_and_the_release_key(
    provision: Provision, tmp_path: Path
) -> None:
    _private, line = keygen(tmp_path / "keys", "hq-releases")
    card = provision("--release-key", str(tmp_path / "keys" / "release-key.pub"))
    assert card.exit_code == 0, card.stderr
    assert "no --release-key" not in card.stderr
    files = entries(card.text(USER_DATA))
    keys = files["/etc/gatescan/release-keys.pub"]
    assert (keys["permissions"], keys["owner"]) == ("0644", "root:root")
    assert keys["content"] == line + "\n"
    assert parse_trusted_keys(keys["content"])
    units = {unit.name: unit.read_text(encoding="utf-8") for unit in UPDATER_UNIT_FILES}
    for name, text in units.items():
        assert files[f"/etc/systemd/system/{name}"]["content"] == text
    assert verify(tmp_path / "root", units) == ""
    commands = [shlex.split(line) for line in runcmd_lines(card.text(USER_DATA))[1:]]
    enable_path = ["systemctl", "enable", "--now", "gatescan-updater.path"]
    assert ["systemctl", "enable", "gatescan-updater.service"] in commands
    assert commands.index(enable_path) < len(commands) - 1  # before the agent starts
    assert commands[-1] == ["systemctl", "enable", "--now", "gatescan-agent.service"]


def test_without_a_release_key_the_card_says_the_gate_will_refuse_updates(
    provision: Provision,
) -> None:
    card = provision()
    assert card.exit_code == 0, card.stderr
    assert "no --release-key: the gate will refuse every update" in card.stderr
    assert "/etc/gatescan/release-keys.pub" not in entries(card.text(USER_DATA))


def test_a_private_key_or_a_non_key_as_release_key_is_refused(
    provision: Provision, tmp_path: Path
) -> None:
    keygen(tmp_path / "keys", "k")
    private = provision("--release-key", str(tmp_path / "keys" / "release-key.pem"))
    assert private.exit_code == 2
    assert "is a private key: give release-key.pub" in private.stderr
    other = tmp_path / "id.pub"
    other.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE me@laptop\n")
    wrong = provision("--release-key", str(other))
    assert wrong.exit_code == 2
    assert "line 1: not `ed25519:BASE64 NAME`" in wrong.stderr
