"""The gate registry: which gates belong to which site, and where each is in its life.

    registry = GateRegistry(store.engine)
    registry.add(NewGate("gate-hq-01", "hq", "lobby", "in"), token_sha256, expires_at)
    registry.enrol(token_sha256, now, Reported(...))   -> the gate, now enrolled (or GateError)

A gate's states: `pending` (registered, its token not yet exchanged), `enrolled` (its card holds
a broker login), `revoked` (refused by the broker; its token too), `retired` (taken out of
service: off the list of gates needing attention). `replace` gives a gate a new token and makes
it `pending` again; `reissue_pending` gives a gate still pending a new token (what `gatescan
provision` does). A token is kept only as its SHA-256; the latest card's stays after it is spent,
so that a replayed token is told `used` (an older card's token is then unknown).

`version()` is a cheap counter of changes (the newest `changed_at` and the number of gates):
the collector rereads its map of sites only when it moves.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

from sqlalchemy import ColumnElement, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from server.store.tables import gates_table

GateState = Literal["pending", "enrolled", "revoked", "retired"]
GATE_STATES: tuple[str, ...] = get_args(GateState)


class GateError(ValueError):
    """A change the registry refuses; `reason` is a word for programs, str() one for people."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class NewGate:
    device_id: str
    site_id: str
    location: str = ""
    direction: str = "in"


@dataclass(frozen=True)
class Reported:
    """What a gate says of itself when it enrols."""

    hardware: str = ""
    agent_version: str = ""


@dataclass(frozen=True)
class GateRecord:
    device_id: str
    site_id: str
    location: str
    direction: str
    state: str
    token_sha256: str
    token_expires_at: datetime
    token_spent_at: datetime | None
    created_at: datetime
    changed_at: datetime
    enrolled_at: datetime | None
    hardware: str
    agent_version: str
    enrolments: int

    @property
    def token_open(self) -> bool:
        """Whether its card can still enrol it (pending, token not spent; expiry aside)."""
        return self.state == "pending" and self.token_spent_at is None


_COLUMNS = [
    column
    for column in gates_table.c
    if column.name in GateRecord.__dataclass_fields__  # every column is a field
]


def _record(row: object) -> GateRecord:
    return GateRecord(**dict(row._mapping))  # type: ignore[attr-defined]


class GateRegistry:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, gate: NewGate, token_sha256: str, expires_at: datetime, now: datetime) -> None:
        """Register a pending gate; GateError `exists` if its id is registered already."""
        values = {
            "device_id": gate.device_id,
            "site_id": gate.site_id,
            "location": gate.location,
            "direction": gate.direction,
            "state": "pending",
            "token_sha256": token_sha256,
            "token_expires_at": expires_at,
            "created_at": now,
            "changed_at": now,
        }
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(gates_table).values(values))
        except IntegrityError:
            raise GateError(
                "exists",
                f"gate {gate.device_id!r} is registered already: `gatescan gate replace` gives it"
                " a new card, `gatescan gate list` shows it",
            ) from None

    def get(self, device_id: str) -> GateRecord | None:
        return self._one(gates_table.c.device_id == device_id)

    def by_token(self, token_sha256: str) -> GateRecord | None:
        return self._one(gates_table.c.token_sha256 == token_sha256)

    def _one(self, where: ColumnElement[bool]) -> GateRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(*_COLUMNS).where(where)).first()
        return None if row is None else _record(row)

    def all(self, sites: Collection[str] | None = None) -> list[GateRecord]:
        """Every registered gate by site and id; of `sites` only, when given."""
        query = select(*_COLUMNS).order_by(gates_table.c.site_id, gates_table.c.device_id)
        if sites is not None:
            query = query.where(gates_table.c.site_id.in_(sorted(sites)))
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [_record(row) for row in rows]

    def enrol(self, device_id: str, token_sha256: str, reported: Reported, now: datetime) -> bool:
        """Spend the token and mark the gate enrolled, in one transaction; False if the token
        was spent (or the gate changed) meanwhile, by another exchange."""
        c = gates_table.c
        with self._engine.begin() as conn:
            done = conn.execute(
                update(gates_table)
                .where(c.device_id == device_id, c.token_sha256 == token_sha256)
                .where(c.state == "pending", c.token_spent_at.is_(None))
                .values(
                    state="enrolled",
                    token_spent_at=now,
                    enrolled_at=now,
                    changed_at=now,
                    hardware=reported.hardware,
                    agent_version=reported.agent_version,
                    enrolments=c.enrolments + 1,
                )
            )
        return bool(done.rowcount)

    def set_state(self, device_id: str, state: GateState, now: datetime) -> GateRecord:
        """Revoke or retire a gate (a card not yet used then enrols no gate: the exchange answers
        `revoked`). GateError `unknown` for an id not registered."""
        return self._change(device_id, now, state=state)

    def new_token(self, device_id: str, token_sha256: str, expires_at: datetime,
                  now: datetime) -> GateRecord:  # fmt: skip
        """A new card for a registered gate: pending again, with this token."""
        return self._change(
            device_id,
            now,
            state="pending",
            token_sha256=token_sha256,
            token_expires_at=expires_at,
            token_spent_at=None,
        )

    def reissue_pending(self, device_id: str, token_sha256: str, expires_at: datetime,
                        now: datetime) -> GateRecord | None:  # fmt: skip
        """A new token for a gate that is still pending, its card unused (the earlier token is
        then unknown); None if the gate is not pending (any more), so that an enrolment that
        came meanwhile is never undone."""
        c = gates_table.c
        with self._engine.begin() as conn:
            done = conn.execute(
                update(gates_table)
                .where(c.device_id == device_id, c.state == "pending", c.token_spent_at.is_(None))
                .values(
                    changed_at=now,
                    token_sha256=token_sha256,
                    token_expires_at=expires_at,
                )
            )
        return self.get(device_id) if done.rowcount else None

    def _change(self, device_id: str, now: datetime, **values: object) -> GateRecord:
        with self._engine.begin() as conn:
            done = conn.execute(
                update(gates_table)
                .where(gates_table.c.device_id == device_id)
                .values(changed_at=now, **values)
            )
        gate = self.get(device_id) if done.rowcount else None
        if gate is None:
            raise GateError("unknown", f"no gate {device_id!r} is registered (gatescan gate list)")
        return gate

    def sites(self) -> dict[str, str]:
        """Every registered gate's site, by device id (the collector's map)."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(gates_table.c.device_id, gates_table.c.site_id)).all()
        return {str(device): str(site) for device, site in rows}

    def site_counts(self) -> dict[str, Counter[str]]:
        """Gates by state, by site."""
        c = gates_table.c
        query = select(c.site_id, c.state, func.count()).group_by(c.site_id, c.state)
        counts: dict[str, Counter[str]] = {}
        with self._engine.connect() as conn:
            for site, state, count in conn.execute(query):
                counts.setdefault(str(site), Counter())[str(state)] = int(count)
        return counts

    def version(self) -> tuple[object, int]:
        """Changes when the registry does: (the newest change, the number of gates)."""
        c = gates_table.c
        with self._engine.connect() as conn:
            newest, count = conn.execute(select(func.max(c.changed_at), func.count())).one()
        return newest, int(count)
