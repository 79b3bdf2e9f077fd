"""Remote commands (issue 17) between the database and the gates, on the collector's connection.

`CommandSender` sends what the database holds as pending (server/store/gate_commands.py: the
dashboard and `gatescan gate command` write there, whatever process they run in), and
`GateReplies` stores what the gates answer on their `answer` topics and say on their `logs`
topics. Both run inside every `Collector` (server/collector/service.py). The database is the
mailbox because only the collector may publish a gate's commands, and the broker takes a client
id from its user name: nothing else can log in as the collector without knocking it off.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from protocol.messages import (
    Command,
    CommandAnswer,
    GateLogs,
    LogLine,
    MessageError,
    parse_message,
)
from protocol.text import printable
from protocol.topics import Topic
from server.collector.batch import utc_now
from server.store.gate_commands import OWN_FIELDS, GateCommands


def command_fields(stored: dict[str, Any]) -> dict[str, Any]:
    """The Command's option fields from a row's `args` column: the action's `args`, and the
    fields of their own that push_config and update carry (`settings`, `source`; issue 17),
    stored beside them under their own names."""
    own = {name: stored[name] for name in OWN_FIELDS if name in stored}
    return {"args": {k: v for k, v in stored.items() if k not in OWN_FIELDS}, **own}


log = logging.getLogger("gatescan.collector")

SEND_EVERY_S = 0.1  # how often the sender looks for commands to send
PUBACK_WAIT_S = 5.0
REPLIES_QUEUED_AT_MOST = 1000  # answers and logs waiting to be written; more are dropped
# Log lines stored per gate, whatever the gate sends (it limits itself to 10 a minute; a gate
# that does not is held to this): a token bucket of LOG_BURST, refilled at LOG_LINES_PER_MINUTE.
LOG_LINES_PER_MINUTE = 30.0
LOG_BURST = 60


class Published(Protocol):
    def wait(self, timeout: float) -> str | None: ...


class CommandSender:
    """Sends each pending command: claimed once (several collectors may run), published at
    QoS 1, and marked `unsent` with the reason when the broker did not take it. `issued_at` is
    when the person asked: a command that waited longer than the gate's age rule allows is
    refused by the gate."""

    def __init__(
        self,
        rows: GateCommands,
        send: Callable[[str, bytes], Published],
        connected: Callable[[], bool],
        *,
        clock: Callable[[], datetime] = utc_now,
        every_s: float = SEND_EVERY_S,
        wait_s: float = PUBACK_WAIT_S,
    ) -> None:
        self._rows = rows
        self._send = send
        self._connected = connected
        self._clock = clock
        self._every_s = every_s
        self._wait_s = wait_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="command-sender", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def send_due(self) -> int:
        """Send every pending command now; how many the broker took."""
        sent = 0
        for row in self._rows.claim_pending(self._clock()):
            try:
                command = Command.model_validate(
                    {
                        "command_id": row.command_id,
                        "action": row.action,
                        "issued_at": row.requested_at,
                        "by": printable(row.requested_by, 48)[:64],
                        **command_fields(row.args),
                    }
                )
            except ValueError as exc:
                self._rows.mark_unsent(row.command_id, f"not a valid command: {exc}")
                continue
            problem = self._send(row.device_id, command.to_json()).wait(self._wait_s)
            if problem is None:
                sent += 1
                log.warning(
                    "command %s (%s) sent to %s for %s",
                    row.command_id,
                    row.action,
                    row.device_id,
                    printable(row.requested_by, 64),
                )
            else:
                log.error("command %s to %s not sent: %s", row.command_id, row.device_id, problem)
                self._rows.mark_unsent(row.command_id, problem)
        return sent

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            if not self._connected():
                continue
            try:
                self.send_due()
            except Exception:  # the database may be busy: the next round tries again
                log.exception("commands not sent this round")


class GateReplies:
    """The gates' answers and logs, as hostile input: parsed by protocol/messages.py (64 KiB at
    most, 50 lines of 300 printable characters), the payload's device id the topic's, an
    answer recorded only for a command sent to that very gate, log lines held to
    LOG_LINES_PER_MINUTE per gate; then written by a thread of its own, so paho's thread never
    waits for the database. Text is stored as it came (plain text: the dashboard escapes it)."""

    def __init__(
        self,
        rows: GateCommands,
        *,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rows = rows
        self._clock = clock
        self._monotonic = monotonic
        self._queue: queue.Queue[tuple[str, CommandAnswer | GateLogs] | None] = queue.Queue(
            REPLIES_QUEUED_AT_MOST
        )
        self._buckets: dict[str, tuple[float, float]] = {}  # device id -> (tokens, at)
        self._thread: threading.Thread | None = None
        self.refused = 0
        self.stored = 0

    def handle(self, device_id: str, kind: Topic, payload: bytes) -> str | None:
        """Check one message (paho's thread); None when queued, else why it was dropped."""
        try:
            message = parse_message(kind, payload)
        except MessageError as exc:
            return self._refuse(device_id, kind, exc.reason)
        if not isinstance(message, CommandAnswer | GateLogs):
            return self._refuse(device_id, kind, "bad_topic")
        if message.device_id != device_id:
            return self._refuse(device_id, kind, "device_mismatch")
        if isinstance(message, GateLogs):
            allowed = self._take(device_id, len(message.lines))
            if allowed < len(message.lines):
                message = message.model_copy(update={"lines": message.lines[:allowed]})
            if not message.lines:
                return "over the gate's log limit"
        try:
            self._queue.put_nowait((device_id, message))
        except queue.Full:
            return self._refuse(device_id, kind, "queue_full")
        return None

    def _refuse(self, device_id: str, kind: Topic, reason: str) -> str:
        self.refused += 1
        log.warning("%s of %s dropped: %s", kind.value, device_id, reason)
        return reason

    def _take(self, device_id: str, wanted: int) -> int:
        now = self._monotonic()
        tokens, at = self._buckets.get(device_id, (float(LOG_BURST), now))
        tokens = min(float(LOG_BURST), tokens + (now - at) * LOG_LINES_PER_MINUTE / 60.0)
        taken = min(wanted, int(tokens))
        self._buckets[device_id] = (tokens - taken, now)
        return taken

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gate-replies", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            device_id, message = item
            try:
                if isinstance(message, CommandAnswer):
                    if not self._rows.record_answer(device_id, message, self._clock()):
                        log.warning(
                            "answer of %s to command %s ignored: not sent to it, or answered",
                            device_id,
                            message.command_id,
                        )
                else:
                    lines = list(message.lines)
                    if message.suppressed:  # said on the page as a line of its own
                        lines.append(suppressed_line(message.suppressed, lines[-1].ts))
                    self._rows.add_logs(device_id, lines, self._clock())
                self.stored += 1
            except Exception:
                log.exception("%s's answer or logs not stored", device_id)


def suppressed_line(count: int, ts: datetime) -> LogLine:
    """The line that says how many lines the gate's own limit held back."""
    return LogLine(
        ts=ts,
        level="WARNING",
        logger="gatescan.logs",
        message=f"{count} more warnings or errors held back by the gate's limit",
    )
