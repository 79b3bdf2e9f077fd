"""The Raspberry Pi OS release a provisioned gate runs, and where gatescan lives on it.

One target: Raspberry Pi OS Trixie (Debian 13, 64-bit), the first release whose images run
cloud-init from the boot partition (`user-data`, `network-config`, `meta-data`), which is what
`gatescan provision` writes. Bookworm images configure their first boot with firstrun.sh instead,
so a card written here does nothing on them (docs/operations.md, "From a blank SD card").

The versions below are Debian 13's, which the gate's virtualenv sees through
`--system-site-packages`: picamera2 and lgpio come from apt, built against the OS's numpy, so
pip must never install a numpy of its own over it (picamera2 issues #1088, #1211).
deploy/pi/constraints.txt holds that pin with the rest; its header names this release.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class OsRelease:
    name: str
    debian: int
    python: str  # major.minor of /usr/bin/python3
    numpy: str  # python3-numpy's upstream version
    glibc: str  # major.minor: the newest manylinux tag its wheels may carry
    apt_packages: tuple[str, ...]


TRIXIE = OsRelease(
    name="trixie",
    debian=13,
    python="3.13",
    numpy="2.2.4",
    glibc="2.41",
    apt_packages=(
        "python3-picamera2",  # the camera (libcamera), from Raspberry Pi's apt repository
        "python3-lgpio",  # gpiozero's pins
        # zbar for pyzbar, the decoder ensemble's second reader; Trixie's name for libzbar0
        # after the 64-bit time_t transition.
        "libzbar0t64",
        "python3-venv",
    ),
)
TARGET = TRIXIE

# Where things are on the gate.
BOOT = PurePosixPath("/boot/firmware")  # the boot partition (FAT), where the card's files land
BUNDLE_DIR = "gatescan"  # the bundle's folder on the boot partition
OPT = PurePosixPath("/opt/gatescan")
RELEASES = OPT / "releases"  # one virtualenv per version: releases/0.1.0/bin/gatescan
CURRENT = OPT / "current"  # a symlink to the release in use; the unit runs current/bin/gatescan
ETC = PurePosixPath("/etc/gatescan")
GATE_CONFIG = ETC / "gate.toml"
STATE = PurePosixPath("/var/lib/gatescan")
UNITS = PurePosixPath("/etc/systemd/system")
UNIT_PATH = UNITS / "gatescan-agent.service"
# The updater's units (device/update/; docs/operations.md, "Updating gates") and the release
# keys the gate trusts, root's: what lets a provisioned gate take signed releases later.
UPDATER_UNITS = ("gatescan-updater.service", "gatescan-updater.path")
RELEASE_KEYS = ETC / "release-keys.pub"
SERVICE_USER = "gatescan"
SERVICE_GROUPS = ("video", "gpio")  # the camera's and the pins' device nodes
ADMIN_USER = "gateadmin"  # a technician's SSH login, only when --ssh-key is given
EXTRAS = "device,fast"
CONSTRAINTS_NAME = "constraints.txt"


def wheel_platforms(release: OsRelease = TARGET) -> list[str]:
    """pip's --platform values for a 64-bit Pi on `release`: pip takes a manylinux tag
    literally, so every glibc from manylinux2014's 2.17 up to the release's is named."""
    major, minor = (int(part) for part in release.glibc.split("."))
    tags = [f"manylinux_{major}_{glibc}_aarch64" for glibc in range(17, minor + 1)]
    return ["manylinux2014_aarch64", *tags]
