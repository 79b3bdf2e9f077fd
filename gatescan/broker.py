"""A private Mosquitto broker on a free loopback port, for the demo and the tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class BrokerNotInstalled(RuntimeError):
    """Mosquitto is not on PATH."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s") from None
            time.sleep(0.02)


class LocalBroker:
    """Start `mosquitto` with a generated config; stop it on exit.

    Anonymous access on 127.0.0.1 only: this is for a demo and tests on one machine, never for a
    site (deploy/mosquitto/ holds the production config with passwords and ACLs).
    """

    def __init__(
        self, workdir: Path | None = None, port: int | None = None, extra_config: str = ""
    ) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="gatescan-broker-"))
        self.extra_config = extra_config
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self) -> LocalBroker:
        exe = shutil.which("mosquitto") or _sbin("mosquitto")
        if exe is None:
            raise BrokerNotInstalled(
                "mosquitto is not installed: run `sudo apt-get install mosquitto` "
                "(Debian/Ubuntu package 'mosquitto')"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            f"log_dest file {self.workdir / 'mosquitto.log'}\n"
            "log_type error\nlog_type warning\nlog_type notice\n" + self.extra_config
        )
        self.process = subprocess.Popen(
            [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_for_port(self.host, self.port, timeout=10)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
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
