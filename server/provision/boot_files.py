"""The files `gatescan provision` puts on a gate's boot partition, made and written as a whole:

    user-data        cloud-config: apt packages, the gatescan user, the gate's config and
                     enrolment code, the agent's unit, the install of the bundled release
    network-config   wired Ethernet, and Wi-Fi when given
    meta-data        instance-id and hostname (the gate id)
    gatescan/        the bundle: gatescan's wheel and constraints.txt (bundle.py)

What the gate does with them on first boot is in docs/operations.md ("From a blank SD card").
Secrets (the enrolment code, the Wi-Fi passphrase) are in user-data and network-config only,
each written 0600 here; never in a runcmd command line, where they would show in the
process list and in cloud-init's logs.
"""

from __future__ import annotations

import os
import secrets
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from firmware_config.schema import GateConfig
from protocol.enrolment import ENROLMENT_FILE_NAME
from server.provision.cloud_config import check_user_data
from server.provision.cloud_config import render as render_user_data
from server.provision.network_config import NetworkConfig, check_network_config
from server.provision.network_config import render as render_network_config
from server.provision.target import (
    ADMIN_USER,
    BOOT,
    BUNDLE_DIR,
    CONSTRAINTS_NAME,
    CURRENT,
    ETC,
    EXTRAS,
    GATE_CONFIG,
    RELEASE_KEYS,
    RELEASES,
    SERVICE_GROUPS,
    SERVICE_USER,
    STATE,
    TARGET,
    UNIT_PATH,
    UNITS,
)

USER_DATA = "user-data"
NETWORK_CONFIG = "network-config"
META_DATA = "meta-data"
SECRET_MODE = 0o600
PLAIN_MODE = 0o644
ENROLMENT_PATH = ETC / ENROLMENT_FILE_NAME


@dataclass(frozen=True)
class Card:
    """Everything a gate's card says, checked: see `user_data` for how each part is used."""

    gate_id: str
    enrolment_code: str  # the code's text, as `gatescan gate add` prints it
    network: NetworkConfig
    wheel_name: str  # gatescan-VERSION-py3-none-any.whl, in the bundle
    version: str
    ssh_key: str | None = None
    offline: bool = False  # the bundle holds every dependency's wheel: no index at all
    # The updater's units, (name, text) as shipped, and the release keys the gate trusts
    # (`release-keys.pub` lines): a gate without keys refuses every release.
    updater_units: tuple[tuple[str, str], ...] = ()
    release_keys: str | None = None


def gate_config_text(gate_id: str) -> str:
    """The gate's /etc/gatescan/gate.toml: its id; the rest is the defaults (picamera2, the
    journal in /var/lib/gatescan). The broker and its credentials come from enrolment."""
    text = (
        "# Written by `gatescan provision`. Every setting not here is its default: see\n"
        "# docs/config-example.toml. The broker and the gate's credentials come from its\n"
        f"# enrolment ({ENROLMENT_FILE_NAME} beside this file, used once).\n"
        f'device_id = "{gate_id}"\n'
        f'data_dir = "{STATE}"\n'
    )
    GateConfig.model_validate(tomllib.loads(text))  # the agent's own model accepts it
    return text


def bundle_on_gate() -> PurePosixPath:
    return BOOT / BUNDLE_DIR


def install_commands(card: Card) -> list[str | list[str]]:
    """runcmd: make the release's virtualenv, install the bundled wheel by its path under the
    constraints, check that picamera2 still imports beside the venv's packages, then point
    `current` at the release and start the agent. `set -e` first: cloud-init runs these as
    one shell script, which would otherwise go on past a failed step."""
    bundle = bundle_on_gate()
    release = RELEASES / card.version
    index = ["--no-index"] if card.offline else []
    pip = [
        str(release / "bin" / "pip"),
        "install",
        "--disable-pip-version-check",
        *index,
        "--find-links",
        str(bundle),
        "--constraint",
        str(bundle / CONSTRAINTS_NAME),
        f"{bundle / card.wheel_name}[{EXTRAS}]",
    ]
    check = "import numpy, cv2, picamera2, zxingcpp, pyzbar.pyzbar; print(numpy.__version__)"
    return [
        "set -e",
        ["install", "-d", "-m", "0755", str(ETC), str(RELEASES)],
        ["install", "-d", "-m", "0700", "-o", SERVICE_USER, "-g", SERVICE_USER, str(STATE)],
        ["python3", "-m", "venv", "--system-site-packages", str(release)],
        pip,
        [str(release / "bin" / "python"), "-c", check],
        ["ln", "-sfn", str(release), str(CURRENT)],
        ["systemctl", "daemon-reload"],
        *updater_commands(card),
        ["systemctl", "enable", "--now", UNIT_PATH.name],
    ]


def updater_commands(card: Card) -> list[str | list[str]]:
    """The updater's path unit started (it watches for the agent's request), its service enabled
    for boot (where it finishes an update a power cut stopped)."""
    names = [name for name, _text in card.updater_units]
    paths = [name for name in names if name.endswith(".path")]
    services = [name for name in names if name.endswith(".service")]
    commands: list[str | list[str]] = []
    if services:
        commands.append(["systemctl", "enable", *services])
    if paths:
        commands.append(["systemctl", "enable", "--now", *paths])
    return commands


def user_data(card: Card, unit_text: str) -> dict[str, Any]:
    service_user = {
        "name": SERVICE_USER,
        "system": True,
        "groups": list(SERVICE_GROUPS),
        "shell": "/usr/sbin/nologin",
        "lock_passwd": True,
        "no_create_home": True,
    }
    users: list[Any] = [service_user]
    if card.ssh_key is not None:
        users.append(
            {
                "name": ADMIN_USER,
                "groups": ["sudo", *SERVICE_GROUPS],
                "shell": "/bin/bash",
                "lock_passwd": True,
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "ssh_authorized_keys": [card.ssh_key],
            }
        )
    write_files = [
        _file(GATE_CONFIG, gate_config_text(card.gate_id), "0644", "root:root"),
        # The enrolment code: the agent (user gatescan) reads it once in setup mode.
        _file(ENROLMENT_PATH, card.enrolment_code + "\n", "0600", f"{SERVICE_USER}:{SERVICE_USER}"),
        _file(UNIT_PATH, unit_text, "0644", "root:root"),
        *(_file(UNITS / name, text, "0644", "root:root") for name, text in card.updater_units),
    ]
    if card.release_keys is not None:
        write_files.append(_file(RELEASE_KEYS, card.release_keys, "0644", "root:root"))
    data: dict[str, Any] = {
        "hostname": card.gate_id,
        "manage_etc_hosts": True,
        "package_update": True,
        "packages": list(TARGET.apt_packages),
        "users": users,
        "ssh_pwauth": False,
    }
    if card.ssh_key is not None:
        data["enable_ssh"] = True  # Raspberry Pi OS's key: turns the SSH server on
    data["write_files"] = write_files
    data["runcmd"] = install_commands(card)
    return data


def _file(path: PurePosixPath, content: str, mode: str, owner: str) -> dict[str, Any]:
    # defer: written in cloud-init's final stage, after the users and packages exist (so that
    # the owner can be gatescan) and just before runcmd.
    return {
        "path": str(path),
        "content": content,
        "permissions": mode,
        "owner": owner,
        "defer": True,
    }


def meta_data(gate_id: str, instance: str | None = None) -> str:
    """meta-data: a new instance-id per card, so that a re-written card is a new first boot."""
    instance_id = f"gatescan-{gate_id}-{instance or secrets.token_hex(4)}"
    return yaml.safe_dump({"instance-id": instance_id, "local-hostname": gate_id}, sort_keys=False)


@dataclass(frozen=True)
class CardFile:
    name: str
    text: str
    mode: int


def card_files(card: Card, unit_text: str) -> list[CardFile]:
    """The three cloud-init files, each checked by our models before anything is written."""
    user_text = render_user_data(user_data(card, unit_text))
    check_user_data(user_text)
    network_text = render_network_config(card.network)
    check_network_config(network_text)
    has_wifi = bool(card.network.network.wifis)
    return [
        CardFile(USER_DATA, user_text, SECRET_MODE),
        CardFile(NETWORK_CONFIG, network_text, SECRET_MODE if has_wifi else PLAIN_MODE),
        CardFile(META_DATA, meta_data(card.gate_id), PLAIN_MODE),
    ]


def write_card(out: Path, files: list[CardFile]) -> list[Path]:
    """Each file into `out`, created with its mode from the start (a secret is never readable
    by others, not even for a moment); an existing file is replaced."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for file in files:
        path = out / file.name
        path.unlink(missing_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, file.mode)
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(file.text)
        os.chmod(path, file.mode)  # the umask may have taken bits from a 0644
        written.append(path)
    return written


def runcmd_lines(user_data_text: str) -> list[str]:
    """Each runcmd step as the shell line cloud-init runs (for checks and docs)."""
    steps = yaml.safe_load(user_data_text).get("runcmd", [])
    return [step if isinstance(step, str) else shlex.join(step) for step in steps]
