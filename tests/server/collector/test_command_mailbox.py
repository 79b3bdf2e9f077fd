"""The gates' answers and logs at the collector (server/collector/command_mailbox.py), as hostile
input: too large, not JSON, another gate's device id, an answer to a command never sent to that
gate, more log lines than a gate may send; markup stored as text (the page escapes it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from protocol.messages import MAX_MESSAGE_BYTES, GateLogs, LogLine
from protocol.topics import Topic
from server.collector.command_mailbox import LOG_BURST, GateReplies
from server.store.database import Store
from server.store.gate_commands import CommandRequest, GateCommands
from tests.support.waiting import wait_until

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


class Monotonic:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rows(tmp_path: Path) -> Iterator[GateCommands]:
    with Store(tmp_path / "server.db") as store:
        yield GateCommands(store.engine)


def logs(device_id: str, count: int, message: str = "m") -> bytes:
    line = LogLine(ts=NOW, level="ERROR", logger="gatescan.x", message=message)
    return GateLogs(device_id=device_id, lines=[line] * count).to_json()


def test_hostile_replies_are_dropped_and_markup_kept_as_text(rows: GateCommands) -> None:
    clock = Monotonic()
    replies = GateReplies(rows, clock=lambda: NOW, monotonic=clock)
    replies.start()
    try:
        assert replies.handle("gate-1", Topic.LOGS, b"x" * (MAX_MESSAGE_BYTES + 1)) == "too_large"
        assert replies.handle("gate-1", Topic.LOGS, b"\xff") == "not_json"
        assert replies.handle("gate-1", Topic.LOGS, logs("gate-2", 1)) == "device_mismatch"
        # An answer to a command sent to gate-2, from gate-1: stored nowhere.
        rows.request(CommandRequest(command_id="cmd-00000001", device_id="gate-2", site_id="hq",
                     action="identify", args={}, requested_by="a", requested_at=NOW))  # fmt: skip
        rows.claim_pending(NOW)
        forged = {"command_id": "cmd-00000001", "device_id": "gate-1", "action": "identify",
                  "status": "done", "ts": "2026-03-02T03:00:00Z"}  # fmt: skip
        assert replies.handle("gate-1", Topic.ANSWER, json.dumps(forged).encode()) is None
        markup = '<img src=x onerror="alert(1)">'
        assert replies.handle("gate-1", Topic.LOGS, logs("gate-1", 1, markup)) is None
        # A gate that ignores its own limit: LOG_BURST lines now, then 30 a minute.
        assert replies.handle("gate-1", Topic.LOGS, logs("gate-1", 50)) is None
        assert replies.handle("gate-1", Topic.LOGS, logs("gate-1", 50)) is None
        assert replies.handle("gate-1", Topic.LOGS, logs("gate-1", 1)) == (
            "over the gate's log limit"
        )
        clock.now += 60.0
        assert replies.handle("gate-1", Topic.LOGS, logs("gate-1", 50)) is None
        wait_until(lambda: len(rows.logs("gate-1", 1000)) == LOG_BURST + 30, 5, "stored")
    finally:
        replies.stop()
    assert rows.logs("gate-1", 1000)[-1].message == markup
    sent = rows.get("cmd-00000001")
    assert sent is not None and sent.status == "sent", "gate-1 cannot answer for gate-2"
    assert rows.logs("gate-2") == []
