"""The gate's recent warnings and errors, in memory, redacted: what `send_logs` answers with and
what the `logs` topic carries (issue 17).

    ring = RecentLogs()                         # a logging.Handler, WARNING and above
    logging.getLogger().addHandler(ring)
    ring.recent(50)                             # the newest lines, oldest first
    ring.follow(callback)                       # each new line, as it comes (the uplink's)

No personal data leaves the gate this way. The agent's own log calls never name a person (a
scan is logged by its verdict, never by its card number or name), and every line is redacted
here besides, before it is kept: a run of 9 or more digits (a CCCD number is 12, a phone
number 10) becomes `[number]`, a run of 16 or more hex digits (a pass id, a code's hash)
`[id]`, an e-mail address `[email]`; a record marked `extra={"personal": True}` is never kept.
The line is one line of at most LINE_MAX_CHARS printable characters.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

LINE_MAX_CHARS = 300
KEPT_LINES = 200
_NUMBER = re.compile(r"\d[\d .-]{7,}\d")
_HEX_ID = re.compile(r"\b[0-9a-fA-F]{16,}\b")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_LOGGER = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class LogRecordLine:
    ts: datetime
    level: str  # WARNING, ERROR, CRITICAL
    logger: str
    message: str


def redact(text: str) -> str:
    """`text` without what could name a person: long digit runs, long hex ids, e-mail
    addresses; control characters escaped; at most LINE_MAX_CHARS characters."""
    text = _EMAIL.sub("[email]", text)
    text = _HEX_ID.sub("[id]", text)
    text = _NUMBER.sub(_number, text)
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    if len(text) > LINE_MAX_CHARS:
        text = text[: LINE_MAX_CHARS - 1] + "…"
    return text


def _level_word(level: int) -> str:
    if level >= logging.CRITICAL:
        return "CRITICAL"
    return "ERROR" if level >= logging.ERROR else "WARNING"


def _number(found: re.Match[str]) -> str:
    digits = sum(ch.isdigit() for ch in found.group())
    return "[number]" if digits >= 9 else found.group()


class RecentLogs(logging.Handler):
    """Keeps the newest KEPT_LINES warnings and errors, redacted; tells each to its followers
    (called in the logging thread: a follower must return at once)."""

    def __init__(self, kept: int = KEPT_LINES, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self._lines: deque[LogRecordLine] = deque(maxlen=kept)
        self._followers: list[Callable[[LogRecordLine], None]] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "personal", False):
            return
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                error = record.exc_info[1]
                message += f" ({type(error).__name__}: {error})"
            line = LogRecordLine(
                ts=datetime.fromtimestamp(record.created, UTC),
                level=_level_word(record.levelno),
                logger=_LOGGER.sub("_", record.name)[:64],
                message=redact(message),
            )
        except Exception:  # a bad format string must not break the caller's logging
            return
        with self._guard:
            self._lines.append(line)
            followers = list(self._followers)
        for follower in followers:
            # Never log a follower's failure from here: it would come back to this handler.
            with contextlib.suppress(Exception):
                follower(line)

    def recent(self, limit: int) -> list[LogRecordLine]:
        with self._guard:
            return list(self._lines)[-limit:] if limit > 0 else []

    def follow(self, follower: Callable[[LogRecordLine], None]) -> None:
        with self._guard:
            self._followers.append(follower)
