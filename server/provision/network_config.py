"""The gate's `network-config`: cloud-init's network config version 2 (netplan's format), which
Raspberry Pi OS Trixie hands to NetworkManager on first boot.

cloud-init's `schema` command has no schema for this file, so `NetworkConfig` is ours: the keys a
gate uses (wired Ethernet by DHCP, and Wi-Fi when the technician gives one), nothing else.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from firmware_config.errors import ConfigError, Problem, problems_from_validation

WIRED = "eth0"
WIRELESS = "wlan0"
_PSK = re.compile(r"[\x20-\x7e]{8,63}|[0-9A-Fa-f]{64}")

CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
Psk = Annotated[str, StringConstraints(pattern=_PSK.pattern)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AccessPoint(_Strict):
    password: Psk


class Ethernet(_Strict):
    dhcp4: bool = True
    optional: bool = True  # booting does not wait for a cable that is not there


class Wifi(_Strict):
    dhcp4: bool = True
    optional: bool = True
    regulatory_domain: CountryCode = Field(alias="regulatory-domain")
    access_points: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=32)], AccessPoint
    ] = Field(alias="access-points", min_length=1, max_length=1)


class Network(_Strict):
    version: Literal[2]
    renderer: Literal["NetworkManager"] = "NetworkManager"
    ethernets: dict[str, Ethernet] = Field(default_factory=dict)
    wifis: dict[str, Wifi] = Field(default_factory=dict)


class NetworkConfig(_Strict):
    network: Network


class WifiPskError(ValueError):
    """A Wi-Fi passphrase WPA2 cannot use; the message says why (never the passphrase)."""


def valid_psk(psk: str) -> str:
    """The passphrase, or WifiPskError: 8 to 63 printable ASCII characters, or 64 hex digits."""
    if not _PSK.fullmatch(psk):
        raise WifiPskError(
            f"a WPA2 passphrase is 8 to 63 printable ASCII characters (or 64 hex digits);"
            f" this one has {len(psk)} characters"
            + ("" if psk.isascii() else ", not all of them ASCII")
        )
    return psk


def network_config(ssid: str | None, psk: str | None, country: str) -> NetworkConfig:
    """Wired Ethernet by DHCP, plus the Wi-Fi network when `ssid` is given."""
    wifis = {}
    if ssid is not None:
        if psk is None:
            raise WifiPskError(f"Wi-Fi {ssid!r} needs its passphrase")
        point = AccessPoint(password=valid_psk(psk))
        wifis[WIRELESS] = Wifi(regulatory_domain=country, access_points={ssid: point})
    return NetworkConfig(network=Network(version=2, ethernets={WIRED: Ethernet()}, wifis=wifis))


def render(config: NetworkConfig) -> str:
    data = config.model_dump(by_alias=True, exclude_defaults=False)
    if not data["network"]["wifis"]:
        del data["network"]["wifis"]
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def check_network_config(text: str, source: str = "network-config") -> NetworkConfig:
    """The parsed file, or ConfigError naming every problem (with "did you mean")."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError([Problem(source, f"not YAML: {error}")]) from None
    try:
        return NetworkConfig.model_validate(data)
    except ValidationError as error:
        problems = problems_from_validation(error, NetworkConfig, lambda keys: source)
        raise ConfigError(problems) from None
