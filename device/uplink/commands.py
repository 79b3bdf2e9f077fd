"""Commands from the collector (protocol/messages.py `Command`, on the gate's own `command`
topic): checked here before anything is done, then handed on.

A command is carried out only when it is well formed, issued within COMMAND_MAX_AGE_S of the
gate's clock either way, and not seen before (its `command_id`): a command the broker held while
the gate was offline, one replayed later, or one sent twice never opens the door. Each refusal is
one WARNING naming why; nothing a payload holds reaches the log unescaped.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

from protocol.messages import COMMAND_MAX_AGE_S, Command, MessageError, parse_message
from protocol.text import printable
from protocol.topics import Topic

log = logging.getLogger("gatescan.commands")

# Command ids remembered: far more than a site sends within COMMAND_MAX_AGE_S (after that a
# repeat is refused for its age anyway).
REMEMBERED_COMMANDS = 1024


class CommandGate:
    """Checks each command and hands a fresh one on: `release_door(command)` for
    `release_door` (True: released; False: this gate has no door to release). `now` is the
    gate's wall clock (aware). Called on the MQTT thread; one at a time."""

    def __init__(
        self,
        *,
        release_door: Callable[[Command], bool],
        now: Callable[[], datetime],
        max_age_s: float = COMMAND_MAX_AGE_S,
    ) -> None:
        self._release_door = release_door
        self._now = now
        self._max_age_s = max_age_s
        self._seen: OrderedDict[str, None] = OrderedDict()

    def handle(self, payload: bytes) -> bool:
        """True when the command was carried out; False when it was refused (and logged)."""
        try:
            command: Command = parse_message(Topic.COMMAND, payload)
        except MessageError as exc:
            log.warning("command refused: malformed (%s)", printable(str(exc), 300))
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
            return False
        if command.command_id in self._seen:
            log.warning("command %s refused: seen before", command.command_id)
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
        done = self._release_door(command)
        if not done:
            log.warning("command %s: this gate has no door relay to release", command.command_id)
        return done
