"""What a running agent tells the updater about itself: the health file in its data dir.

The agent (device/app.py) writes HEALTH_FILE when it first processes a frame and when its broker
link first comes up (and again whenever the link comes back), replaced whole each time:

    {"version": "0.2.0", "pid": 1234, "frame_at": 1733...,  "broker_at": 1733...}

(times are the wall clock's seconds; null until it happened). After switching releases the
updater waits for a file whose `pid` is the agent's main process now and whose `version` is the
release it switched to, with both times set: a processed frame and the broker connection, by the
new agent itself. An old file (the previous agent's) never counts: its pid and version differ.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from device.system.atomic_files import write_atomically

log = logging.getLogger(__name__)

HEALTH_FILE = "agent_health.json"
MAX_HEALTH_BYTES = 4096


@dataclass(frozen=True)
class AgentHealth:
    version: str
    pid: int
    frame_at: float | None
    broker_at: float | None

    def healthy_as(self, version: str, pid: int) -> bool:
        return (
            self.version == version
            and self.pid == pid
            and self.frame_at is not None
            and self.broker_at is not None
        )

    def missing(self) -> list[str]:
        """What has not happened yet, in words for the result's reason."""
        happened = (("a processed frame", self.frame_at), ("the broker connection", self.broker_at))
        return [what for what, at in happened if at is None]


class HealthBeacon:
    """The agent's side: thread-safe, cheap after the first frame (one flag read per frame)."""

    def __init__(
        self,
        data_dir: Path,
        version: str,
        *,
        pid: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = data_dir / HEALTH_FILE
        self._version = version
        self._pid = os.getpid() if pid is None else pid
        self._clock = clock
        self._lock = threading.Lock()
        self._frame_at: float | None = None
        self._broker_at: float | None = None
        self._up = False
        self._failed = False

    def frame_processed(self) -> None:
        if self._frame_at is not None:
            return
        with self._lock:
            if self._frame_at is None:
                self._frame_at = self._clock()
                self._write()

    def link(self, up: bool) -> None:
        """The broker link's state: written when it comes up (the first time, and again)."""
        with self._lock:
            was_up, self._up = self._up, up
            if up and not was_up:
                self._broker_at = self._clock()
                self._write()

    def _write(self) -> None:
        record = {
            "version": self._version,
            "pid": self._pid,
            "frame_at": self._frame_at,
            "broker_at": self._broker_at,
        }
        try:
            write_atomically(self._path, json.dumps(record).encode("utf-8") + b"\n")
            self._failed = False
        except OSError as exc:  # a report: the gate goes on
            if not self._failed:
                log.warning("cannot write %s: %s", self._path, exc.strerror)
            self._failed = True


def read_health(data_dir: Path) -> AgentHealth | None:
    """The agent's health file, None when missing or unreadable (a file half-written cannot be:
    it is replaced whole)."""
    path = data_dir / HEALTH_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as file:
            body = json.loads(file.read(MAX_HEALTH_BYTES))
        frame_at, broker_at = body["frame_at"], body["broker_at"]
        return AgentHealth(
            version=str(body["version"]),
            pid=int(body["pid"]),
            frame_at=None if frame_at is None else float(frame_at),
            broker_at=None if broker_at is None else float(broker_at),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
