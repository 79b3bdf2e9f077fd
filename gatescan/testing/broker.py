"""A private Mosquitto broker on a free loopback port, for the demo and the tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

STARTUP_TIMEOUT_S = 10.0


class BrokerNotInstalled(RuntimeError):
    """Mosquitto is not on PATH."""


class BrokerFailedToStart(RuntimeError):
    """Mosquitto exited at once or never listened; the message ends with its log."""


@dataclass(frozen=True)
class BrokerAccess:
    """Who may log in and what each user may do: a site's security, for a LocalBroker.

    password_file is one made by mosquitto_passwd (see write_password_file); acl_file is a
    Mosquitto ACL file such as deploy/mosquitto/gatescan.acl.
    """

    password_file: Path
    acl_file: Path
    allow_anonymous: bool = False
    username_as_client_id: bool = False  # Mosquitto's use_username_as_clientid


def write_password_file(path: Path, passwords: Mapping[str, str]) -> Path:
    """A Mosquitto password file holding these users and passwords (hashed by mosquitto_passwd).

    The passwords go on mosquitto_passwd's command line (-b), where other local users could see
    them: for tests and demos only, never for a site's real passwords.
    """
    exe = shutil.which("mosquitto_passwd") or _sbin("mosquitto_passwd")
    if exe is None:
        raise BrokerNotInstalled(
            "mosquitto_passwd is not installed: it ships with the Debian/Ubuntu package 'mosquitto'"
        )
    if not passwords:
        raise ValueError("a password file needs at least one user")
    for number, (user, password) in enumerate(passwords.items()):
        create = ["-c"] if number == 0 else []  # -c starts a new file, replacing any old one
        subprocess.run(
            [exe, "-b", *create, str(path), user, password],
            check=True,
            capture_output=True,
        )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalBroker:
    """Start `mosquitto` with a generated config; stop it on exit.

    By default anonymous access on 127.0.0.1 only: this is for a demo and tests on one machine,
    never for a site (deploy/mosquitto/ holds the production config with passwords and ACLs).
    Given `access`, it logs clients in and confines them as a site's broker does.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        port: int | None = None,
        extra_config: str = "",
        access: BrokerAccess | None = None,
    ) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="gatescan-broker-"))
        self.extra_config = extra_config
        self.access = access
        self.process: subprocess.Popen[bytes] | None = None
        self._started_once = False

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def log_text(self) -> str:
        """Everything the broker logged since this object first started it ("" if nothing yet),
        for a failing test to show next to its assertion."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> LocalBroker:
        exe = shutil.which("mosquitto") or _sbin("mosquitto")
        if exe is None:
            raise BrokerNotInstalled(
                "mosquitto is not installed: run `sudo apt-get install mosquitto` "
                "(Debian/Ubuntu package 'mosquitto')"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self._config())
        # What Mosquitto prints before its log file is open (a bad config line, a port in use)
        # goes to stderr: into the same file, so log_text() tells the whole story. A fresh log
        # for a fresh broker; a restart appends.
        mode = "ab" if self._started_once else "wb"
        with self.log_path.open(mode) as stderr:
            self.process = subprocess.Popen(
                [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=stderr
            )
        self._started_once = True
        try:
            self._wait_until_listening(STARTUP_TIMEOUT_S)
        except BrokerFailedToStart:
            self.stop()
            raise
        return self

    def _wait_until_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._listening():
            exit_code = self.process.poll() if self.process is not None else None
            if exit_code is not None:
                problem = f"mosquitto exited with code {exit_code}"
            elif time.monotonic() > deadline:
                problem = f"nothing listens on {self.host}:{self.port} after {timeout} s"
            else:
                time.sleep(0.02)  # a port to poll: there is no event to wait on
                continue
            raise BrokerFailedToStart(f"{problem}; its log:\n{self.log_text()}")

    def _listening(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def _config(self) -> str:
        lines = [
            f"listener {self.port} {self.host}",
            *self._access_lines(),
            "persistence false",
            "set_tcp_nodelay true",  # as a site's broker (deploy/mosquitto/gatescan.conf)
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if os.geteuid() == 0:
            # Started as root, Mosquitto switches to the `mosquitto` user, which may not open
            # files in a private (0700) temp dir: the log would be silently missing.
            lines.append("user root")
        return "\n".join(lines) + "\n" + self.extra_config

    def _access_lines(self) -> list[str]:
        if self.access is None:
            return ["allow_anonymous true"]
        return [
            f"allow_anonymous {'true' if self.access.allow_anonymous else 'false'}",
            f"password_file {self.access.password_file}",
            f"acl_file {self.access.acl_file}",
            f"use_username_as_clientid {'true' if self.access.username_as_client_id else 'false'}",
        ]

    def stop(self) -> None:
        if self.process is not None:
            stop_mosquitto(self.process)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _sbin(name: str) -> str | None:
    for folder in ("/usr/sbin", "/usr/local/sbin"):
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    return None


def stop_mosquitto(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (Mosquitto saves its persistence and closes), SIGKILL after 5 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
