"""A rollout's plan and its gates' results, decided without I/O.

Planning: each gate of the account's sites gets a result at once, `skipped` (not selected,
already at the target, newer than it with "only outdated", offline with "skip offline"), or
`waiting` to be sent. With "canary first" one of the waiting gates, the first online one, is
sent alone, and the others wait for its result.

Judging a gate that was sent (`judge`), from what the server knows of it: its command's answer
(a refusal is final), its version (its status and telemetry after the updater restarted it on
the new release), the updater's last result in its telemetry (`update_result`, protocol/
messages.py), and the time. A result is the gate's own only when it is about the target and was
written after the command (within the command's clock tolerance): an older failure of the same
version from an earlier rollout does not count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from protocol.messages import COMMAND_MAX_AGE_S
from protocol.release_bundle import is_version, version_key

SKIPPED = "skipped"
WAITING = "waiting"  # not yet sent: behind the canary, or about to go
SENT = "sent"
UPDATED = "updated"
FAILED = "update_failed"
NO_ANSWER = "no_answer"
NOT_SENT = "not_sent"  # the canary failed or never answered: never sent
FINISHED = frozenset({SKIPPED, UPDATED, FAILED, NO_ANSWER, NOT_SENT})
RESULTS = (SKIPPED, WAITING, SENT, UPDATED, FAILED, NO_ANSWER, NOT_SENT)

# A rollout's phases: its canary's result awaited; the others sent; every gate final.
CANARY, REST, DONE = "canary", "rest", "done"
DEFAULT_TIMEOUT_S = 900  # a download, the install, the health window: minutes, not hours
# A gate's clock may be this far behind the server's and still take a command.
CLOCK_TOLERANCE = timedelta(seconds=COMMAND_MAX_AGE_S)


@dataclass(frozen=True)
class GateNow:
    """A gate as the fleet shows it when the rollout starts."""

    device_id: str
    site_id: str
    version: str
    online: bool


@dataclass(frozen=True)
class RolloutOptions:
    target: str
    only_outdated: bool = True
    skip_offline: bool = True
    canary: bool = True
    timeout_s: int = DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class PlannedGate:
    device_id: str
    site_id: str
    from_version: str
    result: str  # SKIPPED or WAITING
    detail: str = ""


@dataclass(frozen=True)
class Plan:
    gates: tuple[PlannedGate, ...]
    canary: str | None  # the gate sent first, alone; None: every waiting gate goes at once

    @property
    def phase(self) -> str:
        if self.canary is not None:
            return CANARY
        return REST if any(gate.result == WAITING for gate in self.gates) else DONE


def is_older(version: str, target: str) -> bool:
    """Whether `version` comes before `target` in the release order; a version that is not one
    (an older agent's, or none reported yet) counts as older: the updater decides."""
    if not is_version(version):
        return True
    return version_key(version) < version_key(target)


def plan(
    gates: Iterable[GateNow], selected: frozenset[str] | None, options: RolloutOptions
) -> Plan:
    """Each gate's start (`selected` None: every gate given), by site and id."""
    planned = []
    for gate in sorted(gates, key=lambda g: (g.site_id, g.device_id)):
        why = _skipped_because(gate, selected, options)
        planned.append(
            PlannedGate(
                gate.device_id, gate.site_id, gate.version, SKIPPED if why else WAITING, why
            )
        )
    waiting = [gate for gate in planned if gate.result == WAITING]
    canary = None
    if options.canary and len(waiting) > 1:
        online = {gate.device_id for gate in gates if gate.online}
        canary = next((g for g in waiting if g.device_id in online), waiting[0]).device_id
    return Plan(tuple(planned), canary)


def _skipped_because(
    gate: GateNow, selected: frozenset[str] | None, options: RolloutOptions
) -> str:
    if selected is not None and gate.device_id not in selected:
        return "not selected"
    if gate.version == options.target:
        return f"already at {options.target}"
    if options.only_outdated and not is_older(gate.version, options.target):
        return f"newer than {options.target}"
    if options.skip_offline and not gate.online:
        return "offline"
    return ""


@dataclass(frozen=True)
class SentGate:
    """What the server knows of a gate that was sent the update."""

    sent_at: datetime
    command_status: str  # its gate_commands row: pending, sent, accepted, refused, ...
    command_detail: str
    version: str  # its status's (or telemetry's) version now
    update_result: Mapping[str, Any] | None  # its telemetry's update_result


def judge(gate: SentGate, target: str, timeout_s: float, now: datetime) -> tuple[str, str] | None:
    """The gate's final result and its detail, or None while it may still come."""
    if gate.command_status in ("refused", "failed"):
        return FAILED, f"the gate {gate.command_status} it: {gate.command_detail}"
    if gate.command_status == "unsent":
        return NO_ANSWER, f"never sent: {gate.command_detail}"
    if gate.version == target:
        return UPDATED, f"running {target}"
    result = gate.update_result or {}
    if result.get("version") == target and _written_after(result.get("at"), gate.sent_at):
        outcome = str(result.get("outcome", ""))
        if outcome == UPDATED:
            return UPDATED, f"running {target}"
        if outcome in (FAILED, "update_refused"):
            return FAILED, f"{outcome}: {result.get('reason') or ''}".rstrip(": ")
    if now - gate.sent_at > timedelta(seconds=timeout_s):
        return NO_ANSWER, f"no result within {timeout_s:g} s"
    return None


def _written_after(at: object, sent_at: datetime) -> bool:
    if not isinstance(at, str):
        return False
    try:
        written = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        return False
    return written.tzinfo is not None and written >= sent_at - CLOCK_TOLERANCE
