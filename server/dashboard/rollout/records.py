"""The rollouts in the database (tables `rollouts` and `rollout_gates`, server/store/tables.py;
revision 0005). Here rather than in server/store/, whose folder is full (15 modules): only this
room reads and writes these tables.

Every change of a gate's result or a rollout's phase is one UPDATE that names the state it
leaves (`WHERE result = 'waiting'`), so the loop of `gatescan server` and a page view of
`gatescan web` in another process may move the same rollout at once: each step happens once.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update

from server.dashboard.rollout.plan import DONE, WAITING, Plan, RolloutOptions
from server.store.tables import rollout_gates_table, rollouts_table


@dataclass(frozen=True)
class Rollout:
    id: int
    target_version: str
    source: str
    requested_by: str
    created_at: datetime
    options: RolloutOptions
    phase: str
    canary_device: str | None
    finished_at: datetime | None


@dataclass(frozen=True)
class RolloutGate:
    rollout_id: int
    device_id: str
    site_id: str
    from_version: str
    result: str
    detail: str
    command_id: str | None
    sent_at: datetime | None
    finished_at: datetime | None


class RolloutRows:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(
        self, options: RolloutOptions, source: str, by: str, now: datetime, planned: Plan
    ) -> int:
        """The rollout and each planned gate, in one transaction; its id."""
        with self._engine.begin() as conn:
            inserted = conn.execute(
                insert(rollouts_table).values(
                    target_version=options.target,
                    source=source,
                    requested_by=by,
                    created_at=now,
                    options=_options_json(options),
                    phase=planned.phase,
                    canary_device=planned.canary,
                    finished_at=now if planned.phase == DONE else None,
                )
            ).inserted_primary_key
            assert inserted is not None
            rollout_id = inserted[0]
            if planned.gates:
                conn.execute(
                    insert(rollout_gates_table),
                    [
                        {
                            "rollout_id": rollout_id,
                            "device_id": gate.device_id,
                            "site_id": gate.site_id,
                            "from_version": gate.from_version[:64],
                            "result": gate.result,
                            "detail": gate.detail,
                            "finished_at": None if gate.result == WAITING else now,
                        }
                        for gate in planned.gates
                    ],
                )
        return int(rollout_id)

    def get(self, rollout_id: int) -> Rollout | None:
        with self._engine.connect() as conn:
            row = (
                conn.execute(select(rollouts_table).where(rollouts_table.c.id == rollout_id))
                .mappings()
                .first()
            )
        return None if row is None else _rollout(row)

    def unfinished(self) -> list[Rollout]:
        query = select(rollouts_table).where(rollouts_table.c.phase != DONE)
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(rollouts_table.c.id)).mappings()
            return [_rollout(row) for row in rows]

    def recent(self, sites: Collection[str] | None, limit: int = 10) -> list[Rollout]:
        """The newest rollouts that hold a gate of `sites` (None: every site)."""
        query = select(rollouts_table).order_by(rollouts_table.c.id.desc()).limit(limit)
        if sites is not None:
            touching = select(rollout_gates_table.c.rollout_id).where(
                rollout_gates_table.c.site_id.in_(sorted(sites))
            )
            query = query.where(rollouts_table.c.id.in_(touching))
        with self._engine.connect() as conn:
            return [_rollout(row) for row in conn.execute(query).mappings()]

    def gates(self, rollout_id: int, sites: Collection[str] | None = None) -> list[RolloutGate]:
        table = rollout_gates_table
        query = select(table).where(table.c.rollout_id == rollout_id)
        if sites is not None:
            query = query.where(table.c.site_id.in_(sorted(sites)))
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(table.c.site_id, table.c.device_id)).mappings()
            return [RolloutGate(**row) for row in rows]

    def mark_sent(self, rollout_id: int, device_id: str, command_id: str, now: datetime) -> bool:
        """A waiting gate, claimed to be sent with `command_id`: False when another did it."""
        return self._move(rollout_id, device_id, (WAITING,), "sent", "", now, command_id)

    def finish(
        self,
        rollout_id: int,
        device_id: str,
        leaving: Sequence[str],
        result: str,
        detail: str,
        now: datetime,
    ) -> bool:
        return self._move(rollout_id, device_id, leaving, result, detail, now)

    def _move(
        self,
        rollout_id: int,
        device_id: str,
        leaving: Sequence[str],
        result: str,
        detail: str,
        now: datetime,
        command_id: str | None = None,
    ) -> bool:
        table = rollout_gates_table
        values: dict[str, Any] = {"result": result, "detail": detail[:500]}
        if command_id is not None:
            values |= {"command_id": command_id, "sent_at": now}
        else:
            values["finished_at"] = now
        with self._engine.begin() as conn:
            changed = conn.execute(
                update(table)
                .where(
                    table.c.rollout_id == rollout_id,
                    table.c.device_id == device_id,
                    table.c.result.in_(list(leaving)),
                )
                .values(**values)
            ).rowcount
        return changed == 1

    def move_phase(self, rollout_id: int, leaving: str, phase: str, now: datetime) -> bool:
        values: dict[str, Any] = {"phase": phase}
        if phase == DONE:
            values["finished_at"] = now
        with self._engine.begin() as conn:
            changed = conn.execute(
                update(rollouts_table)
                .where(rollouts_table.c.id == rollout_id, rollouts_table.c.phase == leaving)
                .values(**values)
            ).rowcount
        return changed == 1


def _options_json(options: RolloutOptions) -> dict[str, Any]:
    return {
        "only_outdated": options.only_outdated,
        "skip_offline": options.skip_offline,
        "canary": options.canary,
        "timeout_s": options.timeout_s,
    }


def _rollout(row: Any) -> Rollout:
    stored = dict(row["options"] or {})
    options = RolloutOptions(
        target=row["target_version"],
        only_outdated=bool(stored.get("only_outdated", True)),
        skip_offline=bool(stored.get("skip_offline", True)),
        canary=bool(stored.get("canary", True)),
        timeout_s=int(stored.get("timeout_s", 900)),
    )
    return Rollout(
        id=row["id"],
        target_version=row["target_version"],
        source=row["source"],
        requested_by=row["requested_by"],
        created_at=row["created_at"],
        options=options,
        phase=row["phase"],
        canary_device=row["canary_device"],
        finished_at=row["finished_at"],
    )
