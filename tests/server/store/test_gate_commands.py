"""Remote commands' rows and the gates' log lines (server/store/gate_commands.py), on SQLite and
PostgreSQL: a pending command is claimed once, one waiting too long is never sent, an answer
counts only from the gate it was sent to and never overwrites a final one, and the rows kept per
gate are capped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import URL

from protocol.messages import CommandAnswer, LogLine
from server.store.database import Store
from server.store.gate_commands import (
    GATE_LOG_LINES_KEPT,
    CommandRequest,
    GateCommands,
)

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


def request(command_id: str, at: datetime = NOW, device_id: str = "gate-1") -> CommandRequest:
    return CommandRequest(
        command_id=command_id, device_id=device_id, site_id="hq", action="identify", args={},
        requested_by="alice", requested_at=at,
    )  # fmt: skip


def answer(command_id: str, status: str, device_id: str = "gate-1") -> CommandAnswer:
    return CommandAnswer.model_validate(
        {"command_id": command_id, "device_id": device_id, "action": "identify",
         "status": status, "detail": status, "ts": NOW}
    )  # fmt: skip


def test_a_command_is_claimed_once_and_answered_by_its_own_gate_only(
    store_url: Path | URL,
) -> None:
    with Store(store_url) as store:
        rows, other = GateCommands(store.engine), GateCommands(store.engine)
        rows.request(request("cmd-00000001"))
        rows.request(request("cmd-00000002", at=NOW - timedelta(seconds=25)))
        claimed = rows.claim_pending(NOW)
        assert [row.command_id for row in claimed] == ["cmd-00000001"]
        assert other.claim_pending(NOW) == [], "a second collector finds nothing"
        late = rows.get("cmd-00000002")
        assert late is not None and late.status == "unsent"

        assert not rows.record_answer("gate-2", answer("cmd-00000001", "done", "gate-2"), NOW)
        assert rows.record_answer("gate-1", answer("cmd-00000001", "accepted"), NOW)
        assert rows.record_answer("gate-1", answer("cmd-00000001", "done"), NOW)
        assert not rows.record_answer("gate-1", answer("cmd-00000001", "refused"), NOW)
        done = rows.get("cmd-00000001")
        assert done is not None and (done.status, done.detail) == ("done", "done")


def test_log_lines_kept_per_gate_are_capped(store_url: Path | URL) -> None:
    with Store(store_url) as store:
        rows = GateCommands(store.engine)
        line = LogLine(ts=NOW, level="ERROR", logger="gatescan.x", message="m")
        for _ in range(5):
            rows.add_logs("gate-1", [line] * 50, NOW)
        rows.add_logs("gate-2", [line], NOW)
        assert len(rows.logs("gate-1", 1000)) == GATE_LOG_LINES_KEPT
        assert len(rows.logs("gate-2", 1000)) == 1
