"""The gate's system readings (device/system/facts.py) from a Pi's files kept as test data
(tests/data/pi_system/, see its README), from this machine's own /proc, and from files that are
missing or odd."""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from pathlib import Path

from device.system.facts import (
    InterfaceAddress,
    SystemFacts,
    Throttling,
    WifiSignal,
    disk_space,
    parse_throttled,
    parse_wireless,
)
from protocol.messages import Telemetry
from tests.support.paths import PROJECT_ROOT

PI_SYSTEM = PROJECT_ROOT / "tests" / "data" / "pi_system"
PI5 = PI_SYSTEM / "pi5_wifi"
PI4 = PI_SYSTEM / "pi4_ethernet_undervolt"


def no_vcgencmd() -> str | None:
    return None


def test_a_pi_5_on_wifi() -> None:
    facts = SystemFacts(PI5, vcgencmd=no_vcgencmd)

    assert facts.addresses() == [
        InterfaceAddress("wlan0", "192.168.1.57"),
        InterfaceAddress("wlan0", "2001:db8:0:10:5e2e:1c5a:3b7d:9f10"),
    ]
    assert facts.wifi() == WifiSignal("wlan0", quality=54, level_dbm=-56)
    assert facts.cpu_temperature_c() == 52.6
    # The Pi 5's firmware node has another name than the Pi 4's: found by the pattern.
    assert facts.throttling() == Throttling(0)
    assert facts.throttling() is not None and facts.throttling().flags == []  # type: ignore[union-attr]
    assert facts.uptime_s() == 86523.41
    assert facts.model() == "Raspberry Pi 5 Model B Rev 1.0"


def test_a_pi_4_on_ethernet_with_a_weak_power_supply() -> None:
    facts = SystemFacts(PI4, vcgencmd=no_vcgencmd)

    # Its IPv6 address is link-local only: left out. Loopback too.
    assert facts.addresses() == [InterfaceAddress("eth0", "10.20.0.31")]
    assert facts.wifi() is None  # the header lines only: no Wi-Fi interface up
    assert facts.cpu_temperature_c() == 81.3
    throttling = facts.throttling()
    assert throttling == Throttling(0x50005)
    assert throttling is not None
    assert throttling.flags == [
        "under_voltage",
        "throttled",
        "under_voltage_occurred",
        "throttled_occurred",
    ]
    assert throttling.under_voltage_now and throttling.under_voltage_ever
    assert throttling.throttled_now and throttling.throttled_ever
    assert not throttling.freq_capped_now
    assert facts.uptime_s() == 412.07


def test_without_the_sysfs_file_vcgencmd_answers() -> None:
    asked: list[str] = []

    def vcgencmd() -> str | None:
        asked.append("get_throttled")
        return "throttled=0x20002\n"

    facts = SystemFacts(PI5 / "proc", vcgencmd=vcgencmd)  # a root with no sys/ at all

    throttling = facts.throttling()
    assert asked == ["get_throttled"]
    assert throttling is not None
    assert throttling.flags == ["freq_capped", "freq_capped_occurred"]
    assert throttling.freq_capped_now


def test_missing_files_give_none_and_no_error(tmp_path: Path) -> None:
    facts = SystemFacts(tmp_path, vcgencmd=no_vcgencmd)

    assert facts.addresses() is None
    assert facts.wifi() is None
    assert facts.cpu_temperature_c() is None
    assert facts.throttling() is None
    assert facts.uptime_s() is None
    assert facts.model() is None
    assert disk_space(tmp_path / "no-such-folder") is None


def test_odd_files_give_none_and_no_error(tmp_path: Path) -> None:
    for relative, text in {
        "proc/uptime": "\n",
        "proc/net/wireless": "Inter-|\n face |\n wlan0: 0000 x. y. z\n",
        "proc/net/fib_trie": "Main:\n  |-- not-an-address\n     /32 host LOCAL\n",
        "proc/net/if_inet6": "zz 01 80 10 80 lo\n",
        "proc/net/route": "Iface\nwlan0\tnothex\n",
        "sys/class/thermal/thermal_zone0/temp": "hot\n",
        "sys/devices/platform/soc/soc:firmware/get_throttled": "\n",
    }.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    facts = SystemFacts(tmp_path, vcgencmd=no_vcgencmd)

    assert facts.addresses() == []
    assert facts.wifi() is None
    assert facts.cpu_temperature_c() is None
    assert facts.throttling() is None
    assert facts.uptime_s() is None


def test_parsers_keep_to_the_kernel_formats() -> None:
    assert parse_throttled("50005\n") == Throttling(0x50005)
    assert parse_throttled("throttled=0x0\n") == Throttling(0)
    header = "Inter-| sta-|   Quality\n face | tus | link level noise\n"
    assert parse_wireless(header + "  wlp2s0: 0000   40.  -70.  -256  0 0 0 0 0  0\n") == (
        WifiSignal("wlp2s0", 40, -70)
    )
    # A driver that gives its level in relative units (no dBm flag) is no reading in dBm.
    assert parse_wireless(header + " wlan0: 0000   40.  60.  0  0 0 0 0 0  0\n") is None


# --- this machine's own files ---------------------------------------------------------------------


def test_this_machines_uptime_is_the_kernels_boottime() -> None:
    uptime = SystemFacts().uptime_s()

    assert uptime is not None
    assert abs(uptime - time.clock_gettime(time.CLOCK_BOOTTIME)) < 1.0


def test_this_machines_route_to_the_outside_leaves_from_an_address_it_lists() -> None:
    addresses = SystemFacts().addresses()
    assert addresses is not None and addresses, "this machine has a non-loopback address"
    # Which source address the kernel picks for a packet out (a UDP connect sends nothing).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        source = probe.getsockname()[0]
    listed = {found.address: found.interface for found in addresses}

    assert source in listed
    assert listed[source] in os.listdir("/sys/class/net")
    assert all(ipaddress.ip_address(found.address) for found in addresses)


def test_this_machines_disk_space_is_statvfs(tmp_path: Path) -> None:
    space = disk_space(tmp_path)
    stat = os.statvfs(tmp_path)

    assert space is not None
    assert 0 < space.free_bytes <= space.total_bytes == stat.f_blocks * stat.f_frsize


def test_this_machines_thermal_zone_or_none() -> None:
    temperature = SystemFacts().cpu_temperature_c()
    if Path("/sys/class/thermal/thermal_zone0/temp").exists():
        assert temperature is not None and -40 < temperature < 125
    else:  # a container or a VM: no thermal zone, so no reading (and no error)
        assert temperature is None


def test_readings_out_of_any_sensible_range_are_no_reading(tmp_path: Path) -> None:
    header = "Inter-| sta-|   Quality\n face | tus | link level noise\n"
    for relative, text in {
        "proc/uptime": "-5.00 0.00\n",
        "proc/net/wireless": header + " wlan0: 0000   40.  -200.  -256  0 0 0 0 0  0\n",
        "sys/class/thermal/thermal_zone0/temp": "250000\n",
    }.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    facts = SystemFacts(tmp_path, vcgencmd=no_vcgencmd)

    assert (facts.uptime_s(), facts.wifi(), facts.cpu_temperature_c()) == (None, None, None)


def test_every_root_gives_telemetry_fields_the_protocol_accepts(tmp_path: Path) -> None:
    """Whatever the files say, the telemetry is still sent: a reading the protocol would refuse
    would stop every telemetry of the gate."""
    fields = {
        "ts": "2026-11-26T01:12:28Z",
        "uptime_s": 1.0,
        "fps": 10.0,
        "decode_ms": 3.0,
        "outbox_depth": 0,
        "clock_synced": True,
        "version": "0.1.0",
    }
    for root in (PI5, PI4, tmp_path, Path("/")):
        machine = SystemFacts(root, vcgencmd=no_vcgencmd).telemetry_fields(tmp_path)
        telemetry = Telemetry.model_validate({**fields, **machine})
        assert telemetry.disk_free_bytes is not None, root
