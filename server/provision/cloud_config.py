"""The gate's `user-data` (cloud-config): its keys, typed, and the two checks it gets.

cloud-init's own schema (`cloud-init schema --config-file`, `cloud_init_schema` here) checks
what is inside each module's key, but it lets an unknown top-level key pass (a misspelt
`write_file:` is silently ignored on the Pi), and Debian 12's cloud-init (22.4) predates the keys
that Raspberry Pi OS Trixie adds (`enable_ssh`, `rpi`). So `UserData` below is our own model of
the top level: the keys a gate's card may hold, and nothing else, with the Raspberry Pi ones typed
after Raspberry Pi's cloud-init module (cc_raspberry_pi: `rpi.interfaces`,
`rpi.enable_rpi_connect`). The modules' contents are cloud-init's to check.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from firmware_config.errors import ConfigError, Problem, problems_from_validation

HEADER = "#cloud-config\n"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SerialPort(_Strict):
    console: bool = False
    hardware: bool = False


class RpiInterfaces(_Strict):
    """raspi-config's interfaces, as Raspberry Pi's cloud-init module sets them."""

    spi: bool | None = None
    i2c: bool | None = None
    serial: bool | SerialPort | None = None
    onewire: bool | None = None
    remote_gpio: bool | None = None


class RaspberryPi(_Strict):
    interfaces: RpiInterfaces | None = None
    enable_rpi_connect: bool | None = None


class UserData(_Strict):
    """The top-level keys a gate's user-data may hold. A key not here is an error (cloud-init
    would ignore it); what each module's key holds is checked by cloud-init's schema."""

    hostname: str | None = None
    fqdn: str | None = None
    manage_etc_hosts: bool | str | None = None
    preserve_hostname: bool | None = None
    timezone: str | None = None
    locale: str | None = None
    keyboard: dict[str, Any] | None = None
    package_update: bool | None = None
    package_upgrade: bool | None = None
    package_reboot_if_required: bool | None = None
    packages: list[str | list[str]] | None = None
    apt: dict[str, Any] | None = None
    groups: list[Any] | dict[str, Any] | None = None
    users: list[Any] | None = None
    ssh_pwauth: bool | None = None
    ssh_authorized_keys: list[str] | None = None
    disable_root: bool | None = None
    chpasswd: dict[str, Any] | None = None
    write_files: list[dict[str, Any]] | None = None
    bootcmd: list[str | list[str]] | None = None
    runcmd: list[str | list[str]] | None = None
    ntp: dict[str, Any] | None = None
    power_state: dict[str, Any] | None = None
    final_message: str | None = None
    # Raspberry Pi OS (Trixie) only: not in Debian 12's cloud-init schema.
    enable_ssh: bool | None = None
    rpi: RaspberryPi | None = None


class _Readable(yaml.SafeDumper):
    """YAML a technician can read on the card: a file's text as a literal block, a command or a
    list of names on one line."""


def _text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


def _sequence(dumper: yaml.SafeDumper, items: list[Any]) -> yaml.SequenceNode:
    flat = all(isinstance(item, str | int | bool) and "\n" not in str(item) for item in items)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flat)


_Readable.add_representer(str, _text)
_Readable.add_representer(list, _sequence)


def render(data: dict[str, Any]) -> str:
    """user-data text: the #cloud-config header, then YAML (keys in the order given)."""
    body = yaml.dump(data, Dumper=_Readable, sort_keys=False, allow_unicode=True, width=1000)
    return HEADER + body


def check_user_data(text: str, source: str = "user-data") -> UserData:
    """The parsed top level of a user-data text, or ConfigError naming every problem (an
    unknown key with "did you mean", a Raspberry Pi key of the wrong type)."""
    if not text.startswith(HEADER):
        raise ConfigError([Problem(source, "the first line must be '#cloud-config'")])
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError([Problem(source, f"not YAML: {error}")]) from None
    if not isinstance(data, dict):
        raise ConfigError([Problem(source, "not a mapping of cloud-config keys")])
    try:
        return UserData.model_validate(data)
    except ValidationError as error:
        raise ConfigError(problems_from_validation(error, UserData, lambda keys: source)) from None


@dataclass(frozen=True)
class SchemaVerdict:
    valid: bool
    said: str  # cloud-init's own words


class CloudInitMissingError(RuntimeError):
    """cloud-init is not installed here (Debian: apt install cloud-init)."""


def cloud_init_schema(path: Path) -> SchemaVerdict:
    """`cloud-init schema --config-file PATH`: cloud-init's own check of each module's keys (it
    needs no booted cloud-init; Debian 12's 22.4 knows the modules of its release)."""
    program = shutil.which("cloud-init") or shutil.which("/usr/bin/cloud-init")
    if program is None:
        raise CloudInitMissingError(
            "cloud-init is not installed here (apt install cloud-init; deploy/dev/bootstrap.sh"
            " installs it disabled for this machine's own boots)"
        )
    done = subprocess.run(
        [program, "schema", "--config-file", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return SchemaVerdict(done.returncode == 0, (done.stdout + done.stderr).strip())
