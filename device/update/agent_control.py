"""How the updater restarts the agent and learns that it is READY, with its main process id.

- `SystemdAgent` (a gate): `systemctl restart --no-block gatescan-agent.service`, then
  `systemctl show`: a Type=notify unit is `active`/`running` only once its main process has sent
  READY=1, and MainPID names that process.
- `ChildAgent` (no systemd: the tests, a bench): the updater plays the manager. It stops the agent
  it started before (its pid file), starts `current/bin/gatescan ARGS` in a session of its own with
  NOTIFY_SOCKET set to a datagram socket it listens on, and takes READY=1 from that socket, from
  that process (SO_PASSCRED: the sender's pid is the kernel's word, not the message's).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Protocol

STOP_TIMEOUT_S = 15.0
_UCRED = struct.Struct("3i")  # pid, uid, gid


class AgentControl(Protocol):
    def restart(self) -> None:
        """Start the agent from `current`, stopping the one running first."""

    def ready_pid(self) -> int | None:
        """The agent's main process id once it has said READY=1 since the restart, else None."""

    def close(self) -> None: ...


class SystemdAgent:
    def __init__(self, unit: str = "gatescan-agent.service", systemctl: str = "systemctl") -> None:
        self.unit = unit
        self._systemctl = systemctl

    def restart(self) -> None:
        done = subprocess.run(
            [self._systemctl, "restart", "--no-block", self.unit],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise OSError(f"systemctl restart {self.unit}: {done.stderr.strip()}")

    def ready_pid(self) -> int | None:
        done = subprocess.run(
            [self._systemctl, "show", self.unit, "-p", "ActiveState,SubState,MainPID"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        values = dict(line.partition("=")[::2] for line in done.stdout.splitlines())
        if values.get("ActiveState") != "active" or values.get("SubState") != "running":
            return None
        pid = int(values.get("MainPID") or 0)
        return pid or None

    def close(self) -> None:
        pass


class ChildAgent:
    def __init__(self, current: Path, args: list[str], state: Path) -> None:
        self._program = current / "bin" / "gatescan"
        self._args = args
        self._pid_file = state / "agent.pid"
        self._log = state / "agent.log"
        # A unix socket's path has at most 107 bytes; a deep state folder (a test's) would not
        # fit, so the socket lives in a private folder of its own under the temp folder.
        self._socket_folder = Path(tempfile.mkdtemp(prefix="gatescan-notify-"))
        self._socket_path = self._socket_folder / "notify.sock"
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._socket.bind(str(self._socket_path))
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._socket.setblocking(False)
        self._process: subprocess.Popen[bytes] | None = None
        self._ready = False

    def restart(self) -> None:
        self._stop_earlier()
        self._drain()
        self._ready = False
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [str(self._program), *self._args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NOTIFY_SOCKET": str(self._socket_path)},
                start_new_session=True,
            )
        self._pid_file.write_text(f"{self._process.pid}\n", encoding="ascii")

    def ready_pid(self) -> int | None:
        process = self._process
        if process is None or process.poll() is not None:
            return None
        for pid, message in self._drain():
            if pid == process.pid and "READY=1" in message.splitlines():
                self._ready = True
        return process.pid if self._ready else None

    def close(self) -> None:
        self._socket.close()
        shutil.rmtree(self._socket_folder, ignore_errors=True)

    def _drain(self) -> list[tuple[int, str]]:
        got: list[tuple[int, str]] = []
        while True:
            try:
                data, ancillary, _flags, _address = self._socket.recvmsg(4096, 64)
            except BlockingIOError:
                return got
            pid = 0
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = _UCRED.unpack(payload[: _UCRED.size])[0]
            got.append((pid, data.decode("utf-8", "replace")))

    def _stop_earlier(self) -> None:
        """SIGTERM to the agent this pid file names (one this updater started), then SIGKILL."""
        if self._process is not None:
            _stop(self._process.pid, self._process)
            self._process = None
            return
        try:
            pid = int(self._pid_file.read_text(encoding="ascii"))
        except (OSError, ValueError):
            return
        _stop(pid, None)


def _stop(pid: int, child: subprocess.Popen[bytes] | None) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if child is not None:
            if child.poll() is not None:
                return
        elif not _running(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if child is not None:
        child.wait(timeout=5)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an agent an earlier updater started is not this one's to reap:
    until its new parent reaps it, it stays in the table as a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]
