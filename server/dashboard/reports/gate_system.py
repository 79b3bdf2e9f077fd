"""A gate's machine as its latest telemetry tells it (issue 17): addresses, Wi-Fi signal, disk,
CPU temperature and the firmware's throttling bits, uptime, the config's hash, the site
policy it holds and its updater's last result; and the warnings a technician acts on.

Every reading is the gate's own word: untrusted, shown escaped, and read again through the wire
contract's types (protocol/messages.py), so a stored row that is not what a gate may send (a
database edited by hand, an older server's row) loses only the readings that fail, never the
page. Each is None from a gate older than the readings, or one that cannot read it (no Wi-Fi,
not a Raspberry Pi): the pages show "—".

The thresholds (docs/operations.md, "The fleet page"): Wi-Fi weaker than -75 dBm, less than
1 GiB or 5 % of the disk free, 80 °C or more, and the firmware's under-voltage or throttling
now (its "..._occurred" bits since boot are shown on the gate's page, not warned of).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, Strict, ValidationError

from protocol.messages import (
    ConfigHash,
    InterfaceAddress,
    KeyId,
    Label,
    PolicyVersion,
    UpdateResult,
)

WIFI_WEAK_DBM = -75  # weaker (lower) than this: the link drops scans' acks and telemetry
DISK_LOW_BYTES = 1 << 30  # 1 GiB
DISK_LOW_RATIO = 0.05  # 5 % of the disk
HOT_C = 80.0  # a Pi's firmware starts to cap the clock at 80 °C
# The firmware's bits that are true now, and the warning each is.
THROTTLING_NOW = {
    "under_voltage": "under_voltage",
    "freq_capped": "throttled",
    "throttled": "throttled",
    "soft_temp_limit": "throttled",
}
WARNINGS = ("wifi_weak", "disk_low", "hot", "under_voltage", "throttled")
# Signal to bars, as phones draw them: the least dBm for 4, 3, 2 and 1 bars.
_BARS = ((-55, 4), (-65, 3), (-75, 2), (-85, 1))


class GateSystem(BaseModel):
    """The machine's readings of a gate's latest telemetry; None: not told (an older gate)."""

    addresses: list[InterfaceAddress] | None = None
    wifi_signal_dbm: Annotated[int, Strict(), Field(ge=-150, le=0)] | None = None
    disk_free_bytes: Annotated[int, Strict(), Field(ge=0)] | None = None
    disk_total_bytes: Annotated[int, Strict(), Field(ge=0)] | None = None
    cpu_temp_c: Annotated[float, Field(ge=-60, le=200)] | None = None
    throttling: list[Label] | None = None  # the firmware's bits by name; [] none
    system_uptime_s: Annotated[float, Field(ge=0)] | None = None
    config_hash: ConfigHash | None = None
    policy_version: PolicyVersion | None = None
    policy_key_ids: list[KeyId] | None = None
    list_versions: dict[Label, PolicyVersion] | None = None
    update_result: UpdateResult | None = None  # the updater's last word (issue 17)
    # What needs a technician (WARNINGS), by the thresholds above.
    warnings: list[str] = Field(default_factory=list)

    def wifi_bars(self) -> int | None:
        """0-4 bars for the signal; None without one."""
        if self.wifi_signal_dbm is None:
            return None
        return next((bars for least, bars in _BARS if self.wifi_signal_dbm >= least), 0)

    def disk_free_ratio(self) -> float | None:
        if self.disk_free_bytes is None or not self.disk_total_bytes:
            return None
        return min(self.disk_free_bytes, self.disk_total_bytes) / self.disk_total_bytes

    def uptime_parts(self) -> tuple[int, int, int] | None:
        """The machine's uptime as (days, hours, minutes); None: not told."""
        if self.system_uptime_s is None:
            return None
        minutes = int(self.system_uptime_s // 60)
        return minutes // 1440, minutes // 60 % 24, minutes % 60

    def throttling_now(self) -> list[str]:
        return [bit for bit in self.throttling or () if bit in THROTTLING_NOW]

    def throttling_before(self) -> list[str]:
        """The bits that are not true now: "..._occurred" since boot, and any the firmware
        adds later."""
        return [bit for bit in self.throttling or () if bit not in THROTTLING_NOW]


_READINGS = tuple(name for name in GateSystem.model_fields if name != "warnings")


def gate_system(telemetry: dict[str, Any] | None) -> GateSystem:
    """The readings of a gate's stored telemetry, with their warnings: each reading that is not
    what the wire contract allows is left out (None), the others kept."""
    told = {name: (telemetry or {}).get(name) for name in _READINGS}
    try:
        system = GateSystem.model_validate(told)
    except ValidationError as exc:
        bad = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
        system = GateSystem.model_validate({n: None if n in bad else v for n, v in told.items()})
    return system.model_copy(update={"warnings": _warnings(system)})


def _warnings(system: GateSystem) -> list[str]:
    found: set[str] = set()
    if system.wifi_signal_dbm is not None and system.wifi_signal_dbm < WIFI_WEAK_DBM:
        found.add("wifi_weak")
    ratio, free = system.disk_free_ratio(), system.disk_free_bytes
    if free is not None and free < DISK_LOW_BYTES:
        found.add("disk_low")
    if ratio is not None and ratio < DISK_LOW_RATIO:
        found.add("disk_low")
    if system.cpu_temp_c is not None and system.cpu_temp_c >= HOT_C:
        found.add("hot")
    found.update(THROTTLING_NOW[bit] for bit in system.throttling_now())
    return [warning for warning in WARNINGS if warning in found]


def size_text(count: int | None) -> str:
    """Bytes as GiB or MiB, one decimal ("—" for None): units both languages read."""
    if count is None:
        return "—"
    if count >= 1 << 30:
        return f"{count / (1 << 30):.1f} GiB"
    return f"{count / (1 << 20):.0f} MiB"
