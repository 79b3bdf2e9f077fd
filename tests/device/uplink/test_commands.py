"""A command from the dashboard at the gate (device/uplink/commands.py), before any broker: a fresh
`release_door` releases the door for relay_seconds on gpiozero MockFactory pins; a stale one, one
from the future, one seen before and a malformed one are refused, logged, and open nothing."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from device.app import door_release
from device.indicator.base import Release
from device.uplink.commands import CommandGate, Outcome
from protocol.messages import Command, CommandAnswer
from tests.device.indicator.test_gpio import RELAY, Gate

NOW = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def command(issued_at: datetime = NOW, command_id: str = "cmd-0001") -> bytes:
    return Command(
        command_id=command_id, action="release_door", issued_at=issued_at, by="alice"
    ).to_json()


def gate_and_commands() -> tuple[Gate, CommandGate, list[tuple[Release, bool]]]:
    heard: list[tuple[Release, bool]] = []
    gate = Gate(on_release=lambda *change: heard.append(change))
    commands = CommandGate(release_door=door_release(gate.indicator), now=lambda: NOW)
    return gate, commands, heard


def test_a_fresh_command_releases_the_door_for_relay_seconds() -> None:
    gate, commands, heard = gate_and_commands()
    assert commands.handle(command(NOW - timedelta(seconds=29)))
    assert gate.pin(RELAY).state, "released at once"
    assert heard == [(Release.DASHBOARD, True)], "told on: counted in Health and the telemetry"
    assert gate.play(5.0) == [(0.0, {"relay"}), (3.0, set())], "for relay_seconds, no light"
    gate.indicator.close()


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (command(NOW - timedelta(seconds=31)), "old"),
        (command(NOW - timedelta(hours=5)), "old"),  # queued while the gate was offline
        (command(NOW + timedelta(seconds=31)), "in the future"),
        (b'{"command_id": "cmd-0001", "action": "release_door"}', "malformed"),
        (
            b'{"command_id": "cmd-0001", "action": "unlock_all", "issued_at": '
            b'"2025-03-01T08:00:00Z", "by": "x"}',
            "malformed",
        ),
        (command().replace(b"08:00:00Z", b"08:00:00"), "malformed"),  # a naive time
        (b"\xff not json", "malformed"),
    ],
)
def test_a_stale_future_or_malformed_command_opens_nothing(
    payload: bytes, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    gate, commands, heard = gate_and_commands()
    with caplog.at_level(logging.WARNING, logger="gatescan.commands"):
        assert not commands.handle(payload)
    assert not gate.pin(RELAY).state and heard == []
    assert why in caplog.text and "refused" in caplog.text
    gate.indicator.close()


def test_a_command_seen_before_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    gate, commands, heard = gate_and_commands()
    assert commands.handle(command())
    gate.play(5.0)
    with caplog.at_level(logging.WARNING, logger="gatescan.commands"):
        assert not commands.handle(command()), "the broker's redelivery, or a replay"
    assert "seen before" in caplog.text
    assert heard == [(Release.DASHBOARD, True)], "released once"
    assert commands.handle(command(command_id="cmd-0002")), "another command is another release"
    gate.indicator.close()


def test_a_gate_without_a_relay_releases_nothing() -> None:
    gate = Gate(relay=None)
    commands = CommandGate(release_door=door_release(gate.indicator), now=lambda: NOW)
    assert not commands.handle(command())
    assert not CommandGate(release_door=door_release(None), now=lambda: NOW).handle(command())
    gate.indicator.close()


@pytest.mark.parametrize("detail", ["x" * 1000, "\u202e\x1b" * 300, "problems: " + "é" * 400])
def test_a_long_or_unprintable_detail_is_cut_to_fit_and_the_answer_still_goes(
    detail: str,
) -> None:
    answers: list[CommandAnswer] = []
    commands = CommandGate(
        release_door=lambda _command: False,
        now=lambda: NOW,
        actions={"identify": lambda _command, _later: Outcome("refused", detail)},
        answer=answers.append,
        device_id="gate-1",
    )
    asked = Command(command_id="cmd-0002", action="identify", issued_at=NOW, by="alice")
    commands.handle(asked.to_json())
    [answer] = answers
    assert answer.status == "refused" and 100 < len(answer.detail) <= 200
