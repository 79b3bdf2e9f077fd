"""Rollouts started and moved on.

`start_rollout` plans the rollout (plan.py), keeps it (records.py), audits it (one row per site
it touches, with that site's gates) and sends what may go at once. `advance` moves every
unfinished rollout: it sends the waiting gates their phase allows (the canary alone first; the
others once the canary is `updated`), judges each sent gate from what the server heard since
(plan.py's `judge`), and after a canary that failed or never answered marks the others
`not_sent`.

Two callers move rollouts: `RolloutTask`, the loop `gatescan server` runs beside its collector
(every ADVANCE_EVERY_S), and the updates page, which advances before it shows (so `gatescan
web`, the dashboard alone on a collector's database, moves them too while someone looks). Both
at once do each step once: every step is an UPDATE that names the state it leaves.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from server.clock import utc_now
from server.dashboard.rollout.plan import (
    CANARY,
    DONE,
    FINISHED,
    NOT_SENT,
    REST,
    SENT,
    SKIPPED,
    UPDATED,
    WAITING,
    GateNow,
    RolloutOptions,
    SentGate,
    judge,
    plan,
)
from server.dashboard.rollout.records import Rollout, RolloutGate, RolloutRows
from server.store.audit import AuditLog
from server.store.database import Store
from server.store.gate_commands import CommandRequest, GateCommands

log = logging.getLogger("gatescan.rollout")

ADVANCE_EVERY_S = 5.0


def start_rollout(
    store: Store,
    by: str,
    gates: Iterable[GateNow],
    selected: frozenset[str] | None,
    options: RolloutOptions,
    source: str,
    now: datetime,
) -> int:
    """The rollout of `options.target` from `source` to `gates` (the account's own; `selected`
    None: all of them), kept, audited and started; its id."""
    planned = plan(gates, selected, options)
    rows = RolloutRows(store.engine)
    rollout_id = rows.create(options, source, by, now, planned)
    audit = AuditLog(store.engine)
    touched = sorted({g.site_id for g in planned.gates if g.detail != "not selected"})
    for site in touched:
        of_site = [g for g in planned.gates if g.site_id == site]
        details: dict[str, Any] = {
            "rollout": rollout_id,
            "version": options.target,
            "source": source,
            "only_outdated": options.only_outdated,
            "skip_offline": options.skip_offline,
            "canary": planned.canary,
            "to_send": [g.device_id for g in of_site if g.result == WAITING],
            "skipped": {g.device_id: g.detail for g in of_site if g.result == SKIPPED},
        }
        audit.record(by, "update", f"rollout {rollout_id}", details, site_id=site)
    advance_rollout(store, rollout_id, now)
    return rollout_id


def advance(store: Store, now: datetime) -> None:
    for rollout in RolloutRows(store.engine).unfinished():
        advance_rollout(store, rollout.id, now)


def advance_rollout(store: Store, rollout_id: int, now: datetime) -> None:
    rows = RolloutRows(store.engine)
    for _ in range(3):  # a canary's success sends the others in the same call
        rollout = rows.get(rollout_id)
        if rollout is None or rollout.phase == DONE:
            return
        gates = rows.gates(rollout_id)
        for gate in gates:
            if gate.result == WAITING and (
                rollout.phase == REST or gate.device_id == rollout.canary_device
            ):
                _send(store, rollout, gate, now)
        _judge_sent(store, rollout, rows.gates(rollout_id), now)
        if not _next_phase(rows, rollout, rows.gates(rollout_id), now):
            return


def _send(store: Store, rollout: Rollout, gate: RolloutGate, now: datetime) -> None:
    command_id = secrets.token_urlsafe(12)
    if not RolloutRows(store.engine).mark_sent(rollout.id, gate.device_id, command_id, now):
        return  # another process sent it
    GateCommands(store.engine).request(
        CommandRequest(
            command_id=command_id,
            device_id=gate.device_id,
            site_id=gate.site_id,
            action="update",
            args={"version": rollout.target_version, "source": rollout.source},
            requested_by=rollout.requested_by,
            requested_at=now,
        )
    )
    log.info("rollout %d: update to %s sent to %s", rollout.id, rollout.target_version,
             gate.device_id)  # fmt: skip


def _judge_sent(store: Store, rollout: Rollout, gates: list[RolloutGate], now: datetime) -> None:
    sent = [gate for gate in gates if gate.result == SENT]
    if not sent:
        return
    devices = {device.device_id: device for device in store.devices()}
    commands = GateCommands(store.engine)
    rows = RolloutRows(store.engine)
    for gate in sent:
        command = commands.get(gate.command_id or "")
        device = devices.get(gate.device_id)
        telemetry: dict[str, Any] = (device.telemetry if device else None) or {}
        versions = {device.version if device else "", str(telemetry.get("version", ""))}
        found = judge(
            SentGate(
                sent_at=gate.sent_at or now,
                command_status=command.status if command else "sent",
                command_detail=command.detail if command else "",
                version=rollout.target_version if rollout.target_version in versions else "",
                update_result=telemetry.get("update_result"),
            ),
            rollout.target_version,
            rollout.options.timeout_s,
            now,
        )
        if found is not None:
            rows.finish(rollout.id, gate.device_id, (SENT,), found[0], found[1], now)


def _next_phase(
    rows: RolloutRows, rollout: Rollout, gates: list[RolloutGate], now: datetime
) -> bool:
    """The rollout's next phase when its gates call for one; True when it moved."""
    if rollout.phase == CANARY:
        canary = next((g for g in gates if g.device_id == rollout.canary_device), None)
        if canary is None or canary.result not in FINISHED:
            return False
        if canary.result == UPDATED:
            return rows.move_phase(rollout.id, CANARY, REST, now)
        why = f"the canary {canary.device_id}: {canary.result}"
        for gate in gates:
            if gate.result == WAITING:
                rows.finish(rollout.id, gate.device_id, (WAITING,), NOT_SENT, why, now)
        return rows.move_phase(rollout.id, CANARY, DONE, now)
    if rollout.phase == REST and all(gate.result in FINISHED for gate in gates):
        return rows.move_phase(rollout.id, REST, DONE, now)
    return False


class RolloutTask:
    """`advance` every `every_s` seconds until stopped (a daemon thread of `gatescan server`)."""

    def __init__(
        self,
        store: Store,
        *,
        every_s: float = ADVANCE_EVERY_S,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._every = every_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rollouts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                advance(self._store, self._clock())
            except Exception:  # the next round tries again; the server keeps serving
                log.exception("rollouts not advanced")
