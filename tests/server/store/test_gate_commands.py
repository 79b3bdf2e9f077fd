"""Remote commands' rows and the gates' log lines (server/store/gate_commands.py), on SQLite and
PostgreSQL: a pending command is claimed once, one waiting too long is never sent, an answer
counts only from the gate it was sent to and never overwrites a final one, one sent and never
answered reads as `no_answer` after ANSWER_WITHIN, and the rows kept per gate are capped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import URL

from protocol.messages import CommandAnswer, LogLine
from server.store.database import Store
from server.store.gate_commands import (
    ANSWER_WITHIN,
    GATE_LOG_LINES_KEPT,
    NO_ANSWER_DETAIL,
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


def test_a_command_sent_and_never_answered_reads_as_no_answer_until_an_answer_comes(
    store_url: Path | URL,
) -> None:
    assert ANSWER_WITHIN.total_seconds() == 60  # twice the gate's 30 s age rule
    with Store(store_url) as store:
        rows = GateCommands(store.engine)
        rows.request(request("cmd-silent-1"))  # an older gate, or one gone offline
        rows.request(request("cmd-silent-2", at=NOW + timedelta(seconds=1)))
        rows.request(request("cmd-answered", at=NOW + timedelta(seconds=2)))
        assert len(rows.claim_pending(NOW)) == 3
        assert rows.record_answer("gate-1", answer("cmd-answered", "done"), NOW)
        rows.request(request("cmd-unsent", at=NOW - timedelta(seconds=25)))
        rows.request(request("cmd-pending", at=NOW + timedelta(seconds=15)))
        rows.claim_pending(NOW + timedelta(seconds=30))  # unsent (too late), and sent 30 s on

        def status(command_id: str, now: datetime | None) -> tuple[str, str]:
            row = rows.get(command_id, now)
            assert row is not None
            return row.status, row.detail

        just_before = NOW + ANSWER_WITHIN - timedelta(seconds=1)
        assert status("cmd-silent-1", just_before) == ("sent", "")
        after = NOW + ANSWER_WITHIN
        assert status("cmd-silent-1", after) == ("no_answer", NO_ANSWER_DETAIL)
        assert status("cmd-silent-1", None) == ("sent", "")  # as stored: nothing written
        assert status("cmd-answered", after + timedelta(hours=1))[0] == "done"
        assert status("cmd-unsent", after + timedelta(hours=1))[0] == "unsent"
        listed = {row.command_id: row.status for row in rows.recent("gate-1", now=after)}
        assert listed == {
            "cmd-silent-1": "no_answer",
            "cmd-silent-2": "no_answer",
            "cmd-answered": "done",
            "cmd-unsent": "unsent",
            "cmd-pending": "sent",  # sent 30 s before: an answer may still come
        }
        # An answer that still comes counts, as it would over `sent`.
        assert rows.record_answer("gate-1", answer("cmd-silent-2", "refused"), after)
        assert status("cmd-silent-2", after)[0] == "refused"


def test_log_lines_kept_per_gate_are_capped(store_url: Path | URL) -> None:
    with Store(store_url) as store:
        rows = GateCommands(store.engine)
        line = LogLine(ts=NOW, level="ERROR", logger="gatescan.x", message="m")
        for _ in range(5):
            rows.add_logs("gate-1", [line] * 50, NOW)
        rows.add_logs("gate-2", [line], NOW)
        assert len(rows.logs("gate-1", 1000)) == GATE_LOG_LINES_KEPT
        assert len(rows.logs("gate-2", 1000)) == 1
