"""The remote commands added within v1 (issue 17): new actions and bounded `args` on `Command`,
the `answer` and `logs` messages; an older gate (whose `Command` knew `release_door` alone and
no `args`) refuses the new actions as malformed, and still reads a door release that carries
args; a newer gate answers an action it does not know `refused`, never carries it out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import pytest
from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints, ValidationError

from device.uplink.commands import CommandGate
from protocol.messages import (
    COMMAND_ACTIONS,
    COMMAND_ID_PATTERN,
    Command,
    CommandAnswer,
    GateLogs,
    LogLine,
    MessageError,
    parse_message,
)
from protocol.topics import Topic

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


class CommandBeforeIssue17(BaseModel):
    """`Command` as gates before issue 17 read it (protocol/messages.py at that time)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    command_id: Annotated[str, StringConstraints(pattern=COMMAND_ID_PATTERN)]
    action: Literal["release_door"]
    issued_at: AwareDatetime
    by: str


def command(action: str, **args: object) -> bytes:
    return Command.model_validate(
        {"command_id": "cmd-0001", "action": action, "issued_at": NOW, "by": "alice",
         "args": args}
    ).to_json()  # fmt: skip


@pytest.mark.parametrize("action", [a for a in COMMAND_ACTIONS if a != "release_door"])
def test_an_older_gate_refuses_each_new_action(action: str) -> None:
    with pytest.raises(ValidationError):
        CommandBeforeIssue17.model_validate_json(command(action))


def test_an_older_gate_still_reads_a_door_release_with_args() -> None:
    old = CommandBeforeIssue17.model_validate_json(command("release_door", note="x"))
    assert old.action == "release_door"


@pytest.mark.parametrize(
    "args",
    [
        {f"k{n}": True for n in range(9)},  # more than 8
        {"lines": 3601},
        {"lines": -1},
        {"nested": {"a": 1}},
        {"Bad-Name": True},
        {"text": "line\nbreak"},
    ],
)
def test_args_are_bounded(args: dict[str, object]) -> None:
    payload = (
        b'{"command_id":"cmd-0001","action":"selftest_gpio","issued_at":"2026-03-02T03:00:00Z",'
        b'"by":"a","args":' + __import__("json").dumps(args).encode() + b"}"
    )
    with pytest.raises(MessageError):
        parse_message(Topic.COMMAND, payload)


def test_an_answer_and_logs_are_validated_as_hostile_input() -> None:
    line = {"ts": "2026-03-02T03:00:00Z", "level": "ERROR", "logger": "x", "message": "m"}
    good = {"command_id": "cmd-0001", "device_id": "gate-1", "action": "send_logs",
            "status": "done", "ts": "2026-03-02T03:00:00Z", "lines": [line]}  # fmt: skip
    assert parse_message(Topic.ANSWER, __import__("json").dumps(good).encode()).lines
    for bad in (
        {**good, "status": "ok"},
        {**good, "lines": [line] * 51},
        {**good, "lines": [{**line, "message": "x" * 301}]},
        {**good, "lines": [{**line, "message": "a\x1b[31mred"}]},
        {**good, "lines": [{**line, "level": "INFO"}]},
        {**good, "device_id": "../etc"},
    ):
        with pytest.raises(MessageError):
            parse_message(Topic.ANSWER, __import__("json").dumps(bad).encode())
    logs = GateLogs(device_id="gate-1", lines=[LogLine.model_validate(line)], suppressed=3)
    assert parse_message(Topic.LOGS, logs.to_json()) == logs


def test_a_newer_gate_answers_an_unknown_action_refused_and_does_nothing() -> None:
    answers: list[CommandAnswer] = []
    released: list[object] = []
    gate = CommandGate(
        release_door=lambda c: released.append(c) is None,
        now=lambda: NOW,
        answer=answers.append,
        device_id="gate-1",
    )
    future = (
        b'{"command_id":"cmd-0002","action":"format_disk","issued_at":"2026-03-02T03:00:00Z",'
        b'"by":"a"}'
    )
    assert not gate.handle(future)
    assert not gate.handle(command("identify"))  # known to the wire, no handler on this gate
    assert released == []
    assert [(a.command_id, a.status, a.detail) for a in answers] == [
        ("cmd-0002", "refused", "malformed: unknown action format_disk"),
        ("cmd-0001", "refused", "identify is not possible on this gate"),
    ]
