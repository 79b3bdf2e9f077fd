"""Remote commands to gates and their answers (table gate_commands), and the gates' recent
warnings and errors (table gate_logs); issue 17.

    rows = GateCommands(store.engine)
    rows.request(CommandRequest(...))        # the dashboard or `gatescan gate command`: pending
    rows.claim_pending(now)                  # a collector: each pending row it may publish, once
    rows.record_answer(device_id, answer)    # the gate's answer (its own command ids only)
    rows.get(command_id, now)                # as it stands: `no_answer` for one sent long ago
    rows.add_logs(device_id, lines, now)     # the gate's `logs`, the newest kept per gate

The database is the mailbox between whoever asks (the dashboard's process, a CLI) and the
collector that holds the broker connection: only the collector may publish a gate's commands,
and the broker takes its client id from the user name, so nothing else can log in as it. A
claim is one UPDATE ... WHERE status = 'pending': with several collectors, each row is sent once.

A command sent that no answer followed within ANSWER_WITHIN is read as `no_answer` (`as_seen`,
what `get` and `recent` give with a `now`): the gate carries a command out within
COMMAND_MAX_AGE_S of its making or refuses it, so one that has not answered by then never will
(offline, or older than the action, which it refuses as malformed without an answer). Read so,
not written: no collector has to be running for it, and an answer that still comes is recorded
over it as over `sent`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine, delete, func, insert, select, update

from protocol.messages import COMMAND_MAX_AGE_S, CommandAnswer, LogLine
from server.store.tables import (
    devices_table,
    gate_commands_table,
    gate_logs_table,
    gates_table,
)

PENDING = "pending"
SENT = "sent"
UNSENT = "unsent"  # no collector published it in time, or the broker refused it
NO_ANSWER = "no_answer"  # sent, and no answer within ANSWER_WITHIN: read so, never stored
FINAL = frozenset({"done", "refused", "failed", UNSENT})
# Twice the gate's age rule (COMMAND_MAX_AGE_S, 30 s): what a gate carries out, it answers well
# within it; the rest is the gate's clock being off and the answer's way back.
ANSWER_WITHIN = timedelta(seconds=2 * COMMAND_MAX_AGE_S)
NO_ANSWER_DETAIL = "the gate did not answer: it may be offline or older than this action"
# A pending command no collector claimed within this is never sent: the gate would refuse it for
# its age anyway (COMMAND_MAX_AGE_S is 30 s).
PENDING_FOR_AT_MOST = timedelta(seconds=20)
GATE_LOG_LINES_KEPT = 200  # per gate
COMMANDS_KEPT = 100  # per gate
# A row's `args` column holds the command's `args`, and beside them under these names the fields
# of their own that push_config and update carry (protocol/messages.py's Command).
OWN_FIELDS = ("settings", "source")


class CommandRequest(BaseModel):
    command_id: str
    device_id: str
    site_id: str
    action: str
    args: dict[str, Any]
    requested_by: str
    requested_at: datetime


class CommandRow(CommandRequest):
    sent_at: datetime | None
    status: str
    detail: str
    answered_at: datetime | None
    lines: list[dict[str, Any]]


class GateLogRow(BaseModel):
    id: int
    device_id: str
    ts: datetime
    received_at: datetime
    level: str
    logger: str
    message: str


class GateCommands:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def request(self, request: CommandRequest) -> None:
        """A command to send: pending until a collector claims it. Older rows of the gate
        beyond COMMANDS_KEPT go."""
        row = request.model_dump() | {"status": PENDING, "detail": "", "lines": []}
        with self._engine.begin() as conn:
            conn.execute(insert(gate_commands_table).values(**row))
            _keep_newest(conn, gate_commands_table.c.requested_at, request.device_id, COMMANDS_KEPT)

    def site_of(self, device_id: str) -> str | None:
        """The gate's site: the registry's, else its last status's; None for a gate never
        registered nor heard from."""
        with self._engine.connect() as conn:
            for table in (gates_table, devices_table):
                site = conn.execute(
                    select(table.c.site_id).where(table.c.device_id == device_id)
                ).scalar_one_or_none()
                if site is not None:
                    return str(site)
        return None

    def claim_pending(self, now: datetime) -> list[CommandRow]:
        """Each pending command this caller now owns (status `sent`); one pending too long is
        marked `unsent` instead."""
        table = gate_commands_table
        # A read first, and a write transaction only when there is something to claim: the
        # collector asks ten times a second, and its batches' commits must not wait for that.
        with self._engine.connect() as conn:
            pending = list(conn.execute(select(table).where(table.c.status == PENDING)).mappings())
        claimed: list[CommandRow] = []
        if not pending:
            return claimed
        with self._engine.begin() as conn:
            for row in pending:
                late = row["requested_at"] < now - PENDING_FOR_AT_MOST
                won = conn.execute(
                    update(table)
                    .where(table.c.command_id == row["command_id"], table.c.status == PENDING)
                    .values(
                        status=UNSENT if late else SENT,
                        sent_at=None if late else now,
                        detail="no collector sent it in time" if late else "",
                    )
                ).rowcount
                if won == 1 and not late:
                    claimed.append(CommandRow(**(dict(row) | {"status": SENT, "sent_at": now})))
        return claimed

    def mark_unsent(self, command_id: str, why: str) -> None:
        table = gate_commands_table
        with self._engine.begin() as conn:
            conn.execute(
                update(table)
                .where(table.c.command_id == command_id, table.c.status == SENT)
                .values(status=UNSENT, detail=why[:300])
            )

    def record_answer(self, device_id: str, answer: CommandAnswer, now: datetime) -> bool:
        """The gate's answer on its own command: False when no command of that id was sent to
        that gate (a gate cannot answer for another's), or it already has a final answer."""
        table = gate_commands_table
        values: dict[str, Any] = {
            "status": answer.status,
            "detail": answer.detail,
            "answered_at": now,
        }
        if answer.lines:
            values["lines"] = [line.model_dump(mode="json") for line in answer.lines]
        with self._engine.begin() as conn:
            changed = conn.execute(
                update(table)
                .where(
                    table.c.command_id == answer.command_id,
                    table.c.device_id == device_id,
                    table.c.status.not_in(FINAL),
                )
                .values(**values)
            ).rowcount
        return changed == 1

    def get(self, command_id: str, now: datetime | None = None) -> CommandRow | None:
        """The command's row; given `now`, as it stands then (`as_seen`)."""
        with self._engine.connect() as conn:
            row = (
                conn.execute(
                    select(gate_commands_table).where(
                        gate_commands_table.c.command_id == command_id
                    )
                )
                .mappings()
                .first()
            )
        return None if row is None else as_seen(CommandRow(**row), now)

    def recent(
        self, device_id: str, limit: int = 10, now: datetime | None = None
    ) -> list[CommandRow]:
        """The gate's newest commands, newest first; given `now`, as they stand then."""
        table = gate_commands_table
        query = (
            select(table)
            .where(table.c.device_id == device_id)
            .order_by(table.c.requested_at.desc())
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return [as_seen(CommandRow(**row), now) for row in conn.execute(query).mappings()]

    def newest_done(self, device_id: str, action: str) -> CommandRow | None:
        """The gate's newest command of `action` it answered `done` (push_config's: the settings
        the gate runs over its file, as long as the row is among its COMMANDS_KEPT)."""
        table = gate_commands_table
        query = (
            select(table)
            .where(table.c.device_id == device_id, table.c.action == action)
            .where(table.c.status == "done")
            .order_by(table.c.requested_at.desc())
            .limit(1)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else CommandRow(**row)

    def add_logs(self, device_id: str, lines: Sequence[LogLine], now: datetime) -> int:
        """Store a gate's log lines; the newest GATE_LOG_LINES_KEPT per gate stay."""
        if not lines:
            return 0
        rows = [
            {
                "device_id": device_id,
                "ts": line.ts,
                "received_at": now,
                "level": line.level,
                "logger": line.logger,
                "message": line.message,
            }
            for line in lines
        ]
        with self._engine.begin() as conn:
            conn.execute(insert(gate_logs_table), rows)
            _keep_newest(conn, gate_logs_table.c.id, device_id, GATE_LOG_LINES_KEPT)
        return len(rows)

    def logs(self, device_id: str, limit: int = 50) -> list[GateLogRow]:
        """The gate's newest log lines, newest first."""
        table = gate_logs_table
        query = (
            select(table).where(table.c.device_id == device_id).order_by(table.c.id.desc())
        ).limit(limit)
        with self._engine.connect() as conn:
            return [GateLogRow(**row) for row in conn.execute(query).mappings()]


def as_seen(row: CommandRow, now: datetime | None) -> CommandRow:
    """The row as it stands at `now`: one `sent` more than ANSWER_WITHIN before is `no_answer`,
    with NO_ANSWER_DETAIL. Without `now`, the row as stored."""
    if now is None or row.status != SENT or row.sent_at is None:
        return row
    if now - row.sent_at < ANSWER_WITHIN:
        return row
    return row.model_copy(update={"status": NO_ANSWER, "detail": NO_ANSWER_DETAIL})


def _keep_newest(conn: Any, order: Any, device_id: str, keep: int) -> None:
    """Delete the gate's rows older than its `keep` newest (by `order`)."""
    table = order.table
    count = conn.execute(
        select(func.count()).select_from(table).where(table.c.device_id == device_id)
    ).scalar_one()
    if count <= keep:
        return
    cutoff = conn.execute(
        select(order).where(table.c.device_id == device_id).order_by(order.desc()).offset(keep)
    ).first()
    if cutoff is not None:
        conn.execute(delete(table).where(table.c.device_id == device_id, order <= cutoff[0]))
