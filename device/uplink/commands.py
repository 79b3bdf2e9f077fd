"""Commands from the collector (protocol/messages.py `Command`, on the gate's own `command`
topic): checked here before anything is done, then handed to the action's handler, and
answered on the gate's `answer` topic (protocol/messages.py `CommandAnswer`).

A command is carried out only when it is well formed, issued within COMMAND_MAX_AGE_S of the
gate's clock either way, and not seen before (its `command_id`): a command the broker held while
the gate was offline, one replayed later, or one sent twice never opens the door. Each refusal is
one WARNING naming why, and answered `refused` when the payload names a well-formed command id;
nothing a payload holds reaches the log unescaped.

Handlers run on paho's network thread and return at once (scanning never waits for them): one
that takes longer (a self-test) answers `accepted` now and `done` later through `later`.
"""

from __future__ import annotations

import json
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from protocol.messages import (
    COMMAND_ACTIONS,
    COMMAND_ID_PATTERN,
    COMMAND_MAX_AGE_S,
    AnswerStatus,
    Command,
    CommandAnswer,
    LogLine,
    MessageError,
    parse_message,
)
from protocol.text import PLAIN_TEXT_MAX_CHARS, printable
from protocol.topics import Topic

log = logging.getLogger("gatescan.commands")

# Command ids remembered: far more than a site sends within COMMAND_MAX_AGE_S (after that a
# repeat is refused for its age anyway).
REMEMBERED_COMMANDS = 1024
_COMMAND_ID = re.compile(COMMAND_ID_PATTERN)


@dataclass(frozen=True)
class Outcome:
    """What a handler says of a command: the answer's status, detail and (send_logs) lines."""

    status: AnswerStatus
    detail: str = ""
    lines: tuple[LogLine, ...] = field(default=())


# A handler: the command, and `later(outcome)` for an answer after `accepted`.
Action = Callable[[Command, Callable[[Outcome], None]], Outcome]


class CommandGate:
    """Checks each command and hands a fresh one to its action's handler; answers through
    `answer` (None: no answers, as before answers were added). `release_door(command)` for
    `release_door` (True: released; False: this gate has no door to release). `now` is the
    gate's wall clock (aware). Called on the MQTT thread; one at a time."""

    def __init__(
        self,
        *,
        release_door: Callable[[Command], bool],
        now: Callable[[], datetime],
        max_age_s: float = COMMAND_MAX_AGE_S,
        actions: Mapping[str, Action] | None = None,
        answer: Callable[[CommandAnswer], object] | None = None,
        device_id: str = "",
    ) -> None:
        self._release_door = release_door
        self._now = now
        self._max_age_s = max_age_s
        self._actions = dict(actions or {})
        self._answer = answer
        self._device_id = device_id
        self._seen: OrderedDict[str, None] = OrderedDict()

    def handle(self, payload: bytes) -> bool:
        """True when the command was carried out (or started); False when it was refused."""
        try:
            command: Command = parse_message(Topic.COMMAND, payload)
        except MessageError as exc:
            command_id, action = _named_in(payload)
            unknown = action not in COMMAND_ACTIONS and action != ""
            why = f"malformed: unknown action {printable(action, 32)}" if unknown else "malformed"
            log.warning("command refused: %s (%s)", why, printable(str(exc), 300))
            if command_id is not None:
                self._send(command_id, action if not unknown else "", Outcome("refused", why))
            return False
        age = (self._now() - command.issued_at).total_seconds()
        if abs(age) > self._max_age_s:
            when = "old" if age > 0 else "in the future"
            log.warning(
                "command %s refused: issued %.0f s %s by this gate's clock (more than %g s)",
                command.command_id,
                abs(age),
                when,
                self._max_age_s,
            )
            detail = f"issued {abs(age):.0f} s {when} by the gate's clock (> {self._max_age_s:g} s)"
            self._send(command.command_id, command.action, Outcome("refused", detail))
            return False
        if command.command_id in self._seen:
            log.warning("command %s refused: seen before", command.command_id)
            self._send(command.command_id, command.action, Outcome("refused", "seen before"))
            return False
        self._seen[command.command_id] = None
        while len(self._seen) > REMEMBERED_COMMANDS:
            self._seen.popitem(last=False)
        log.warning(
            "command %s: %s, asked for by %s",
            command.command_id,
            command.action,
            printable(command.by, 64),
        )
        outcome = self._carry_out(command)
        self._send(command.command_id, command.action, outcome)
        return outcome.status in ("accepted", "done")

    def _carry_out(self, command: Command) -> Outcome:
        if command.action == "release_door":
            if self._release_door(command):
                return Outcome("done", "door released")
            log.warning("command %s: this gate has no door relay to release", command.command_id)
            return Outcome("refused", "this gate has no door relay")
        handler = self._actions.get(command.action)
        if handler is None:
            log.warning("command %s: %s is not possible here", command.command_id, command.action)
            return Outcome("refused", f"{command.action} is not possible on this gate")

        def later(outcome: Outcome) -> None:
            self._send(command.command_id, command.action, outcome)

        try:
            return handler(command, later)
        except Exception as exc:
            log.exception("command %s: %s failed", command.command_id, command.action)
            return Outcome("failed", printable(f"{type(exc).__name__}: {exc}", 150))

    def _send(self, command_id: str, action: str, outcome: Outcome) -> None:
        if self._answer is None:
            return
        try:
            answer = CommandAnswer(
                command_id=command_id,
                device_id=self._device_id,
                action=action,
                status=outcome.status,
                # Escapes and the clipping mark lengthen it: cut to the field's limit after.
                detail=printable(outcome.detail, 180)[:PLAIN_TEXT_MAX_CHARS],
                ts=self._now(),
                lines=list(outcome.lines),
            )
            self._answer(answer)
        except Exception:
            log.exception("command %s: the answer was not sent", command_id)


def _named_in(payload: bytes) -> tuple[str | None, str]:
    """The command id (when well formed) and action (any text, "" if none) a payload names,
    whatever else is wrong with it."""
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, ""
    if not isinstance(data, dict):
        return None, ""
    command_id, action = data.get("command_id"), data.get("action")
    good_id = command_id if isinstance(command_id, str) and _COMMAND_ID.match(command_id) else None
    return good_id, action if isinstance(action, str) else ""
