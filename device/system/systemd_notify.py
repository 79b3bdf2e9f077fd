"""systemd's notify protocol, spoken directly: READY, STATUS, WATCHDOG and STOPPING.

Under `Type=notify` systemd gives the service a datagram socket in $NOTIFY_SOCKET (a path, or an
abstract socket written with a leading '@') and waits for `READY=1` before it counts the service
as started. With `WatchdogSec=` it also sets $WATCHDOG_USEC and restarts the service when no
`WATCHDOG=1` arrives within that time; $WATCHDOG_PID, when set, names the one process that is
meant to send them (a child that inherited the environment is not).

The gate sends `WATCHDOG=1` only from its frame loop, after a frame was read and processed, so
a loop that hangs (a camera read that never returns, a decoder stuck) stops the pings and systemd
restarts the agent. Pings go out at most every half interval, as sd_watchdog_enabled(3) advises.

Everything here is inert when $NOTIFY_SOCKET is unset (a terminal, a test, the demo), and a
failed send is logged, never raised: the gate must not stop because its supervisor went away.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def socket_address(notify_socket: str) -> str | None:
    """The address to send to: a path, or an abstract name ('@x' -> '\\0x'); None if neither."""
    if notify_socket.startswith("/"):
        return notify_socket
    if notify_socket.startswith("@") and len(notify_socket) > 1:
        return "\0" + notify_socket[1:]
    return None


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds systemd waits for a WATCHDOG=1, if it expects them from process `pid`."""
    usec_text = env.get("WATCHDOG_USEC", "").strip()
    if not usec_text:
        return None
    pid_text = env.get("WATCHDOG_PID", "").strip()
    if pid_text and pid_text != str(pid):
        log.debug("the systemd watchdog is for process %s, not this one (%d)", pid_text, pid)
        return None
    try:
        usec = int(usec_text)
    except ValueError:
        usec = 0
    if usec <= 0:
        log.warning("ignoring WATCHDOG_USEC=%r: not a positive number of microseconds", usec_text)
        return None
    return usec / 1_000_000


class SystemdNotifier:
    """Sends notify messages to one socket; every method is a no-op without one."""

    def __init__(
        self,
        notify_socket: str | None,
        *,
        watchdog_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._address = socket_address(notify_socket) if notify_socket else None
        if notify_socket and self._address is None:
            log.warning("NOTIFY_SOCKET=%r is not a unix socket: not notifying", notify_socket)
        self.watchdog_seconds = watchdog_seconds if self._address is not None else None
        self._clock = clock
        self._last_ping: float | None = None
        self._lock = threading.Lock()
        self._send_failing = False
        self._socket: socket.socket | None = None
        if self._address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_environment(
        cls, env: Mapping[str, str] = os.environ, pid: int | None = None
    ) -> SystemdNotifier:
        """A notifier for $NOTIFY_SOCKET and the watchdog systemd set up for this process."""
        return cls(
            env.get("NOTIFY_SOCKET") or None,
            watchdog_seconds=watchdog_interval(env, os.getpid() if pid is None else pid),
        )

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def ready(self, status: str = "") -> None:
        """Start-up is complete: systemd counts the service as started from now."""
        self._send("READY=1" + (f"\nSTATUS={one_line(status)}" if status else ""))

    def status(self, text: str) -> None:
        """A line for people: `systemctl status` shows it."""
        self._send(f"STATUS={one_line(text)}")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def watchdog(self) -> bool:
        """Call after real progress; pings systemd if half the watchdog interval has passed.

        Returns True when a ping was sent.
        """
        if self.watchdog_seconds is None:
            return False
        now = self._clock()
        if self._last_ping is not None and now - self._last_ping < self.watchdog_seconds / 2:
            return False
        self._last_ping = now
        return self._send("WATCHDOG=1")

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None

    def _send(self, message: str) -> bool:
        with self._lock:
            if self._socket is None or self._address is None:
                return False
            try:
                self._socket.sendto(message.encode("utf-8"), self._address)
            except OSError as exc:
                # Logged once per run of failures: pings come every few seconds.
                if not self._send_failing:
                    log.warning("systemd notify socket: %s (%s)", exc, message.split("\n")[0])
                self._send_failing = True
                return False
            self._send_failing = False
            return True


def one_line(text: str) -> str:
    """The protocol is one assignment per line: a newline in a status would start another."""
    return " ".join(text.split())
