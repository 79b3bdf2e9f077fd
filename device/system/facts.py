"""What a technician needs to know of the gate's machine, read from the system's own files.

    facts = SystemFacts(Path("/"))        or a folder holding files captured from a Pi (tests)
    facts.addresses()        [InterfaceAddress("wlan0", "192.168.1.42"), ...]   /proc/net/...
    facts.wifi()             WifiSignal("wlan0", quality=54, level_dbm=-56)      /proc/net/wireless
    facts.cpu_temperature_c()  52.1                  /sys/class/thermal/thermal_zone0/temp
    facts.throttling()       Throttling(0x50005)     the firmware's get_throttled (sysfs), else
                                                     `vcgencmd get_throttled`
    facts.uptime_s()         12345.67                /proc/uptime
    disk_space(data_dir)     DiskSpace(free, total)  os.statvfs

Every reading is None when its file is missing or cannot be read as the kernel prints it: a
laptop has no thermal zone, a wired gate no /proc/net/wireless lines. Nothing here raises for a
missing or odd file.

IP addresses come from files, not sockets: IPv4 from /proc/net/fib_trie (each local address is a
`/32 host LOCAL` leaf) with its interface from /proc/net/route (the connected route whose subnet
holds it), IPv6 from /proc/net/if_inet6 (global scope only: a link-local address tells a
technician nothing). Loopback is left out.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VCGENCMD_TIMEOUT_S = 2.0
# Readings outside these are a driver's odd units or a broken sensor: no reading (the
# telemetry's own limits, protocol/messages.py).
CPU_TEMP_RANGE_C = (-60.0, 200.0)
WIFI_LEVEL_RANGE_DBM = (-150, 0)

# The firmware driver's sysfs file (Raspberry Pi OS kernels): Pi 4's path first; a Pi 5's soc
# node has another name, found by the pattern.
THROTTLED_FILE = "sys/devices/platform/soc/soc:firmware/get_throttled"
THROTTLED_PATTERN = "sys/devices/platform/*/*firmware/get_throttled"

# The bits of get_throttled (the firmware's documentation of `vcgencmd get_throttled`).
THROTTLE_BITS: tuple[tuple[int, str], ...] = (
    (0, "under_voltage"),
    (1, "freq_capped"),
    (2, "throttled"),
    (3, "soft_temp_limit"),
    (16, "under_voltage_occurred"),
    (17, "freq_capped_occurred"),
    (18, "throttled_occurred"),
    (19, "soft_temp_limit_occurred"),
)

_IF_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")


@dataclass(frozen=True)
class InterfaceAddress:
    interface: str  # "" when no route names it
    address: str


@dataclass(frozen=True)
class WifiSignal:
    interface: str
    quality: int  # the driver's link quality (of 70 for the Pi's brcmfmac)
    level_dbm: int  # signal level: -50 is strong, -70 fair, -80 weak


@dataclass(frozen=True)
class Throttling:
    """The firmware's get_throttled bits: what is happening now, and what has since boot."""

    bits: int

    @property
    def flags(self) -> list[str]:
        return [name for bit, name in THROTTLE_BITS if self.bits & (1 << bit)]

    @property
    def under_voltage_now(self) -> bool:
        return bool(self.bits & 0x1)

    @property
    def under_voltage_ever(self) -> bool:
        return bool(self.bits & 0x10000)

    @property
    def throttled_now(self) -> bool:
        return bool(self.bits & 0x4)

    @property
    def throttled_ever(self) -> bool:
        return bool(self.bits & 0x40000)

    @property
    def freq_capped_now(self) -> bool:
        return bool(self.bits & 0x2)


@dataclass(frozen=True)
class DiskSpace:
    free_bytes: int  # free to an unprivileged process (f_bavail), as the agent is
    total_bytes: int


def run_vcgencmd() -> str | None:
    """`vcgencmd get_throttled`'s output, or None where there is no vcgencmd or it fails."""
    exe = shutil.which("vcgencmd")
    if exe is None:
        return None
    try:
        done = subprocess.run(
            [exe, "get_throttled"],
            capture_output=True,
            text=True,
            timeout=VCGENCMD_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


class SystemFacts:
    """The machine's readings under `root` ("/" on a gate)."""

    def __init__(
        self, root: Path = Path("/"), vcgencmd: Callable[[], str | None] = run_vcgencmd
    ) -> None:
        self.root = root
        self._vcgencmd = vcgencmd

    def _read(self, relative: str) -> str | None:
        try:
            return (self.root / relative).read_text(encoding="ascii", errors="replace")
        except (OSError, ValueError):
            return None

    def addresses(self) -> list[InterfaceAddress] | None:
        """The machine's IPv4 and global IPv6 addresses with their interfaces; None when
        neither file can be read."""
        fib = self._read("proc/net/fib_trie")
        inet6 = self._read("proc/net/if_inet6")
        if fib is None and inet6 is None:
            return None
        routes = parse_routes(self._read("proc/net/route") or "")
        found: list[InterfaceAddress] = []
        for address in parse_fib_trie_locals(fib or ""):
            found.append(InterfaceAddress(interface_of(address, routes), address))
        found += parse_if_inet6(inet6 or "")
        return found

    def wifi(self) -> WifiSignal | None:
        text = self._read("proc/net/wireless")
        return parse_wireless(text) if text is not None else None

    def cpu_temperature_c(self) -> float | None:
        text = self._read("sys/class/thermal/thermal_zone0/temp")
        if text is None:
            return None
        try:
            celsius = round(int(text.strip()) / 1000, 1)
        except ValueError:
            return None
        return celsius if CPU_TEMP_RANGE_C[0] <= celsius <= CPU_TEMP_RANGE_C[1] else None

    def throttling(self) -> Throttling | None:
        text = self._read(THROTTLED_FILE)
        if text is None:
            found = sorted(self.root.glob(THROTTLED_PATTERN))
            text = self._read(str(found[0].relative_to(self.root))) if found else None
        if text is not None:
            return parse_throttled(text)
        output = self._vcgencmd()
        return parse_throttled(output) if output is not None else None

    def uptime_s(self) -> float | None:
        text = self._read("proc/uptime")
        if text is None:
            return None
        try:
            seconds = float(text.split()[0])
        except (IndexError, ValueError):
            return None
        return seconds if 0 <= seconds < float("inf") else None

    def telemetry_fields(self, data_dir: Path) -> dict[str, Any]:
        """The readings as protocol/messages.py's Telemetry fields (None: not known)."""
        addresses = self.addresses()
        wifi = self.wifi()
        throttling = self.throttling()
        disk = disk_space(data_dir)
        return {
            "addresses": None
            if addresses is None
            else [{"interface": a.interface, "address": a.address} for a in addresses[:16]],
            "wifi_signal_dbm": wifi.level_dbm if wifi is not None else None,
            "disk_free_bytes": disk.free_bytes if disk is not None else None,
            "disk_total_bytes": disk.total_bytes if disk is not None else None,
            "cpu_temp_c": self.cpu_temperature_c(),
            "throttling": throttling.flags if throttling is not None else None,
            "system_uptime_s": self.uptime_s(),
        }

    def model(self) -> str | None:
        text = self._read("proc/device-tree/model")
        if text is None:
            return None
        return text.strip("\x00\n ") or None


def disk_space(path: Path) -> DiskSpace | None:
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    return DiskSpace(stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize)


# --- the kernel's formats -------------------------------------------------------------------------


def parse_fib_trie_locals(text: str) -> list[str]:
    """The local IPv4 addresses of /proc/net/fib_trie (each `|-- ADDR` leaf followed by
    `/32 host LOCAL`), loopback left out, in the order first seen, each once."""
    found: list[str] = []
    leaf: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|-- "):
            leaf = stripped[4:].strip()
        elif leaf is not None and stripped.startswith("/32 host LOCAL"):
            try:
                address = ipaddress.IPv4Address(leaf)
            except ValueError:
                continue
            if not address.is_loopback and str(address) not in found:
                found.append(str(address))
    return found


@dataclass(frozen=True)
class _Route:
    interface: str
    network: ipaddress.IPv4Network


def parse_routes(text: str) -> list[_Route]:
    """The connected routes of /proc/net/route (gateway 0, a mask): their hex fields are the
    kernel's 32-bit values in the machine's byte order, little-endian on a Pi and a PC."""
    routes: list[_Route] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or not _IF_NAME.match(fields[0]):
            continue
        try:
            destination, gateway, mask = (int(fields[i], 16) for i in (1, 2, 7))
        except ValueError:
            continue
        if gateway != 0 or mask == 0:
            continue
        net = ipaddress.IPv4Address(destination.to_bytes(4, "little"))
        netmask = ipaddress.IPv4Address(mask.to_bytes(4, "little"))
        try:
            network = ipaddress.IPv4Network(f"{net}/{netmask}")
        except ValueError:
            continue
        routes.append(_Route(fields[0], network))
    return routes


def interface_of(address: str, routes: list[_Route]) -> str:
    """The interface of the narrowest connected route holding `address`; "" when none does."""
    ip = ipaddress.IPv4Address(address)
    holding = [route for route in routes if ip in route.network]
    if not holding:
        return ""
    return max(holding, key=lambda route: route.network.prefixlen).interface


IPV6_SCOPE_GLOBAL = 0x00


def parse_if_inet6(text: str) -> list[InterfaceAddress]:
    """Global IPv6 addresses of /proc/net/if_inet6 ("ADDR32HEX IFINDEX PLEN SCOPE FLAGS NAME")."""
    found: list[InterfaceAddress] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 6 or len(fields[0]) != 32 or not _IF_NAME.match(fields[5]):
            continue
        try:
            address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
            scope = int(fields[3], 16)
        except ValueError:
            continue
        if scope == IPV6_SCOPE_GLOBAL and not address.is_loopback:
            found.append(InterfaceAddress(fields[5], str(address)))
    return found


def parse_wireless(text: str) -> WifiSignal | None:
    """The first interface line of /proc/net/wireless (two header lines, then
    " wlan0: 0000   54.  -56.  -256 ..."): its link quality and signal level in dBm."""
    for line in text.splitlines()[2:]:
        name, colon, rest = line.partition(":")
        fields = rest.split()
        if not colon or len(fields) < 3 or not _IF_NAME.match(name.strip()):
            continue
        try:
            quality = int(fields[1].rstrip(". "))
            level = int(fields[2].rstrip(". "))
        except ValueError:
            continue
        if not WIFI_LEVEL_RANGE_DBM[0] <= level <= WIFI_LEVEL_RANGE_DBM[1]:
            return None  # a driver reporting in relative units, not dBm: no signal in dBm
        return WifiSignal(name.strip(), quality, level)
    return None


def parse_throttled(text: str) -> Throttling | None:
    """The sysfs file's "50005" (hex, no prefix) or vcgencmd's "throttled=0x50005"."""
    value = text.strip().removeprefix("throttled=")
    try:
        return Throttling(int(value, 16))
    except ValueError:
        return None
