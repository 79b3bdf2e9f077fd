"""What counts as a problem, from one look at the fleet and the server (issue 16, alerts).

    problems = find_problems(Snapshot(gates=[...], dead_letters_10min=3, ...), AlertRules(), now)

A problem has a stable `key` (what it is about: "offline:gate-hq-01"), the site it belongs to
(a manager is told of their own sites only), and how long it must last before anyone is told
(`for_s`): a gate that reboots is not an outage. Only gates that have been heard (they have a
status) can be offline. The texts are in Vietnamese and English; a gate's or site's own words in
them are data, never markup (the senders escape nothing: e-mail is plain text, webhooks JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from server.checkin.limits import DAILY_CAP


class AlertRules(BaseModel):
    """The defaults a manager can change (minutes and counts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    offline_min: float = Field(5.0, gt=0, description="a gate not heard for this long")
    fault_min: float = Field(1.0, ge=0, description="a gate in fault for this long")
    clock_unsynced_min: float = Field(15.0, gt=0, description="a gate's clock not synchronised")
    outbox_events: int = Field(500, ge=1, description="events waiting on a gate...")
    outbox_min: float = Field(10.0, gt=0, description="...for this long")
    dead_letters_10min: int = Field(50, ge=1, description="refused messages in 10 minutes")
    failed_logins_10min: int = Field(30, ge=1, description="failed logins in 10 minutes")
    expiry_days: int = Field(30, ge=1, description="a certificate or key ends within")
    # The self check-in page refuses a location's check-ins past its daily cap (issue 18): the
    # same default (server/checkin/limits.py), and `gatescan server` gives the cap server.toml
    # sets when alerts.toml leaves this out (server/app.py: init_alerts).
    checkins_per_location_day: int = Field(
        DAILY_CAP, ge=1, description="a check-in location's check-ins today (its daily cap)"
    )


@dataclass(frozen=True)
class GateView:
    """One gate as the fleet report sees it (server/dashboard/reports/fleet.py's GateStatus)."""

    device_id: str
    site_id: str
    online: bool
    offline_for_s: float | None
    faults: tuple[str, ...] = ()
    clock_synced: bool | None = None
    outbox: int | None = None


@dataclass(frozen=True)
class Expiring:
    name: str  # "the broker's certificate", "site hq's signing key"...
    site_id: str  # "" for the installation
    ends_at: datetime


@dataclass(frozen=True)
class CheckinsToday:
    """One self check-in location's check-ins (in and out) since the site's midnight. A
    location is not a device: it is never offline and raises no gate's alerts."""

    location_id: str
    site_id: str
    count: int


@dataclass(frozen=True)
class Snapshot:
    gates: list[GateView] = field(default_factory=list)
    dead_letters_10min: int = 0
    failed_logins_10min: int = 0
    expiring: list[Expiring] = field(default_factory=list)
    checkins: list[CheckinsToday] = field(default_factory=list)


@dataclass(frozen=True)
class Problem:
    key: str
    kind: str  # offline, fault, clock, outbox, dead_letters, logins, expiry, checkin_cap
    site_id: str
    device_id: str
    for_s: float  # how long it must last before it is told
    summary_en: str
    summary_vi: str


def find_problems(snapshot: Snapshot, rules: AlertRules, now: datetime) -> list[Problem]:
    found: list[Problem] = []
    for gate in snapshot.gates:
        found += _gate_problems(gate, rules)
    if snapshot.dead_letters_10min >= rules.dead_letters_10min:
        count = snapshot.dead_letters_10min
        found.append(
            Problem(
                "dead_letters", "dead_letters", "", "", 0.0,
                f"{count} refused messages in 10 minutes (bad data from a gate, or an attack)",
                f"{count} tin nhắn bị từ chối trong 10 phút (dữ liệu lỗi, hoặc bị tấn công)",
            )
        )  # fmt: skip
    if snapshot.failed_logins_10min >= rules.failed_logins_10min:
        count = snapshot.failed_logins_10min
        found.append(
            Problem(
                "logins", "logins", "", "", 0.0,
                f"{count} failed logins to the dashboard in 10 minutes",
                f"{count} lần đăng nhập sai vào bảng điều khiển trong 10 phút",
            )
        )  # fmt: skip
    for place in snapshot.checkins:
        if place.count >= rules.checkins_per_location_day:
            found.append(
                Problem(
                    f"checkin_cap:{place.location_id}", "checkin_cap", place.site_id, "", 0.0,
                    f"check-in location {place.location_id} reached {place.count} check-ins "
                    "today: more are refused until midnight",
                    f"điểm khai báo {place.location_id} đã đạt {place.count} lượt hôm nay: "
                    "các lượt sau bị từ chối đến nửa đêm",
                )
            )  # fmt: skip
    for item in snapshot.expiring:
        days = (item.ends_at - now).total_seconds() / 86400
        if days < rules.expiry_days:
            left = max(0, int(days))
            found.append(
                Problem(
                    f"expiry:{item.name}", "expiry", item.site_id, "", 0.0,
                    f"{item.name} ends in {left} days ({item.ends_at:%Y-%m-%d})",
                    f"{item.name} hết hạn sau {left} ngày ({item.ends_at:%Y-%m-%d})",
                )
            )  # fmt: skip
    return found


def _gate_problems(gate: GateView, rules: AlertRules) -> list[Problem]:
    found = []
    name, site = gate.device_id, gate.site_id
    if not gate.online and gate.offline_for_s is not None:
        # The fleet report already waited its own offline_after; the rule's minutes count from
        # the last time the gate was heard.
        remaining = max(0.0, rules.offline_min * 60 - gate.offline_for_s)
        found.append(
            Problem(
                f"offline:{name}", "offline", site, name, remaining,
                f"gate {name} is offline (not heard for over {rules.offline_min:g} minutes)",
                f"cổng {name} mất kết nối (quá {rules.offline_min:g} phút không có tín hiệu)",
            )
        )  # fmt: skip
        return found  # an offline gate's last faults and clock are old news
    for fault in gate.faults:
        found.append(
            Problem(
                f"fault:{name}:{fault}", "fault", site, name, rules.fault_min * 60,
                f"gate {name} reports the fault {fault}",
                f"cổng {name} báo lỗi {fault}",
            )
        )  # fmt: skip
    if gate.clock_synced is False:
        found.append(
            Problem(
                f"clock:{name}", "clock", site, name, rules.clock_unsynced_min * 60,
                f"gate {name}'s clock is not synchronised (entry times cannot be trusted)",
                f"đồng hồ của cổng {name} chưa đồng bộ (giờ ghi nhận không tin cậy được)",
            )
        )  # fmt: skip
    if gate.outbox is not None and gate.outbox >= rules.outbox_events:
        found.append(
            Problem(
                f"outbox:{name}", "outbox", site, name, rules.outbox_min * 60,
                f"gate {name} holds {gate.outbox} entries the server has not acknowledged",
                f"cổng {name} còn {gate.outbox} lượt chưa gửi được lên máy chủ",
            )
        )  # fmt: skip
    return found
