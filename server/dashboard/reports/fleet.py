"""Every gate's state for the fleet page: online or not, where, how well it runs, what is wrong;
and the gate registry (`gatescan gate ...`): pending, enrolled, revoked and retired gates.

A registered gate's registration shapes its flags: a revoked gate is flagged `revoked` (someone
should fetch it), a retired one is never flagged (taken out of service: not a fault)."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from server.clock import local_day_start
from server.dashboard.reports.access import OtherSite, within_sites
from server.dashboard.reports.gate_system import GateSystem, gate_system
from server.store.audit import AuditLog
from server.store.database import DeviceRecord, Store
from server.store.gate_commands import CommandRequest, CommandRow, GateCommands, GateLogRow
from server.store.gates import GateRecord, GateRegistry
from server.store.tables import entries_table


class GateStatus(BaseModel):
    device_id: str
    online: bool  # its retained status says so AND it was heard within offline_after_s
    last_seen: datetime | None  # the last message of any kind from the gate
    offline_for_s: float | None  # None while online
    site_id: str
    location: str
    direction: str  # "in" / "out"; "" until the gate has said
    version: str
    fps: float | None  # from the latest telemetry; None before any
    decode_ms: float | None
    outbox: int | None  # events waiting on the gate for the collector's ack
    frames_dropped: int | None = None  # frames never decoded over the last interval
    # Frames where a code was read against frames where one was likely, over the last interval;
    # None before any, from a gate that cannot tell, and for an interval with no code in view.
    read_ratio: float | None = None
    frames_with_code: int | None = None
    frames_read: int | None = None
    clock_synced: bool | None
    faults: list[str]
    scans_today: int  # entries since local midnight (the site's time zone)
    flagged: bool  # shown at the top: offline too long, in fault, or revoked
    why: list[str]  # "revoked", "offline", "fault:camera", ...
    registration: str = ""  # its state in the gate registry; "" for a gate not registered
    # The machine (latest telemetry): addresses, Wi-Fi, disk, temperature, config, policy held.
    system: GateSystem = Field(default_factory=GateSystem)


class RegisteredGate(BaseModel):
    """A gate of the registry as the fleet page lists it (every text is the gate's or the
    technician's: escaped where shown)."""

    device_id: str
    site_id: str
    location: str
    direction: str
    state: str  # pending / enrolled / revoked / retired
    since: datetime  # when it entered that state (or got its current card)
    card_expires: datetime | None  # a pending gate's card; None otherwise
    hardware: str
    agent_version: str


def registered_gates(store: Store, sites: frozenset[str] | None = None) -> list[RegisteredGate]:
    """The registry, pending first, then enrolled, revoked, retired; by site and id within;
    of `sites` only, when given (the asking account's)."""
    order = {"pending": 0, "enrolled": 1, "revoked": 2, "retired": 3}
    gates = sorted(
        GateRegistry(store.engine).all(sites),
        key=lambda g: (order.get(g.state, 4), g.site_id, g.device_id),
    )
    return [_registered(gate) for gate in gates]


def _registered(gate: GateRecord) -> RegisteredGate:
    return RegisteredGate(
        device_id=gate.device_id,
        site_id=gate.site_id,
        location=gate.location,
        direction=gate.direction,
        state=gate.state,
        since=gate.changed_at,
        card_expires=gate.token_expires_at if gate.token_open else None,
        hardware=gate.hardware,
        agent_version=gate.agent_version,
    )


def fleet_status(
    store: Store,
    now: datetime,
    offline_after_s: float,
    tz: ZoneInfo | None = None,
    *,
    sites: frozenset[str] | None = None,
) -> list[GateStatus]:
    """All gates (of `sites` only, when given), flagged ones first, then by site and id."""
    tz = tz or ZoneInfo("UTC")
    scans = _scans_since(store, local_day_start(now, tz), sites)
    registry = {gate.device_id: gate.state for gate in GateRegistry(store.engine).all(sites)}
    gates = [
        _registration(
            _gate_status(device, now, offline_after_s, scans.get(device.device_id, 0)),
            registry.get(device.device_id, ""),
        )
        for device in store.devices(sites)
    ]
    return sorted(gates, key=lambda g: (not g.flagged, g.site_id, g.device_id))


def _registration(status: GateStatus, state: str) -> GateStatus:
    why = status.why
    if state == "retired":
        why = []
    elif state == "revoked":
        why = ["revoked", *why]
    return status.model_copy(update={"registration": state, "why": why, "flagged": bool(why)})


def _scans_since(store: Store, since: datetime, sites: frozenset[str] | None) -> dict[str, int]:
    c = entries_table.c
    query = (
        select(c.device_id, func.count())
        .where(c.ts >= since, within_sites(c.site_id, sites))
        .group_by(c.device_id)
    )
    with store.engine.connect() as conn:
        return {str(device): int(count) for device, count in conn.execute(query)}


def _gate_status(
    device: DeviceRecord, now: datetime, offline_after_s: float, scans_today: int
) -> GateStatus:
    telemetry: dict[str, Any] = device.telemetry or {}
    heard = [t for t in (device.last_seen, device.status_received_at) if t is not None]
    last_seen = max(heard) if heard else None
    silent_for = None if last_seen is None else (now - last_seen).total_seconds()
    # A retained "online" is only what the gate last said: one that said it and then went quiet
    # (a clean disconnect skips its will, a forged status never had one) is not online. A gate
    # sends telemetry every 30 s by default, so one heard within offline_after_s is alive.
    online = device.state == "online" and silent_for is not None and silent_for <= offline_after_s
    offline_for = None if online else silent_for
    faults = sorted(set(device.faults) | set(telemetry.get("faults", [])))
    why = [f"fault:{fault}" for fault in faults]
    if not online and (offline_for is None or offline_for > offline_after_s):
        why.insert(0, "offline")
    return GateStatus(
        device_id=device.device_id,
        online=online,
        last_seen=last_seen,
        offline_for_s=offline_for,
        site_id=device.site_id,
        location=device.location,
        direction=device.direction,
        version=device.version or str(telemetry.get("version", "")),
        fps=telemetry.get("fps"),
        decode_ms=telemetry.get("decode_ms"),
        outbox=telemetry.get("outbox_depth"),
        frames_dropped=telemetry.get("frames_dropped"),
        read_ratio=_read_ratio(telemetry),
        frames_with_code=telemetry.get("frames_with_code"),
        frames_read=telemetry.get("frames_read"),
        clock_synced=telemetry.get("clock_synced"),
        faults=faults,
        scans_today=scans_today,
        flagged=bool(why),
        why=why,
        system=gate_system(telemetry),
    )


def _read_ratio(telemetry: dict[str, Any]) -> float | None:
    """frames_read / frames_with_code of the latest telemetry; None without a frame to count."""
    likely, read = telemetry.get("frames_with_code"), telemetry.get("frames_read")
    if not isinstance(likely, int) or not isinstance(read, int) or likely <= 0:
        return None
    return min(read, likely) / likely


# --- one gate: its remote commands' answers and its recent warnings and errors (issue 17) -----

# What a person may ask a gate from its page (release_door has its own button on the fleet page).
REMOTE_ACTIONS = ("identify", "selftest_gpio", "reload_config", "restart", "send_logs")
# Asked from a form of their own, not a button: the settings form (push_config), updates.
FORM_ACTIONS = ("push_config", "update")


class GateRemote(BaseModel):
    """One gate's page: the gate, the latest commands with their answers, its newest log lines
    (every text is the gate's: escaped where shown)."""

    device_id: str
    site_id: str
    commands: list[CommandRow]
    logs: list[GateLogRow]


def gate_remote(
    store: Store, device_id: str, sites: frozenset[str] | None, now: datetime | None = None
) -> GateRemote | None:
    """The gate's page for an account holding `sites` (None: every site); None for a gate never
    registered nor heard from; OtherSite for a gate of a site the account does not hold. Its
    commands as they stand at `now` (one sent and never answered: `no_answer`)."""
    rows = GateCommands(store.engine)
    site = rows.site_of(device_id)
    if site is None:
        return None
    if sites is not None and site not in sites:
        raise OtherSite("this gate")
    return GateRemote(
        device_id=device_id,
        site_id=site,
        commands=rows.recent(device_id, now=now),
        logs=rows.logs(device_id),
    )


def request_command(
    store: Store,
    device_id: str,
    action: str,
    args: dict[str, Any],
    by: str,
    now: datetime,
    sites: frozenset[str] | None,
) -> CommandRequest | None:
    """A remote command written for the collector to send, audited with the gate's site; None
    for an unknown gate or action."""
    rows = GateCommands(store.engine)
    site = rows.site_of(device_id)
    if site is None or action not in REMOTE_ACTIONS + FORM_ACTIONS:
        return None
    if sites is not None and site not in sites:
        raise OtherSite("this gate")
    request = CommandRequest(
        command_id=secrets.token_urlsafe(12),
        device_id=device_id,
        site_id=site,
        action=action,
        args=args,
        requested_by=by,
        requested_at=now,
    )
    rows.request(request)
    details = {"command_id": request.command_id, "action": action, "args": args}
    AuditLog(store.engine).record(by, "command", device_id, details, site_id=site)
    return request
