"""The real collector process, `python -m gatescan.cli collector`, as a site runs it: for the crash
and hostile-input scenarios and for the benchmarks that need the real collector. Its log goes to a
file, failpoints are armed through its environment, and it can be SIGKILLed.

A collector here needs GATESCAN_FAILPOINTS set for one run and absent for the next, so it gets
its own environment rather than a variable set in the calling process (where an in-process
Collector would read it and kill the caller).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from server.collector.failpoints import FAILPOINTS_ENV

SUBSCRIBED = "subscribed to gatescan/v1/devices/+/events"
START_TIMEOUT_S = 30.0  # a cold interpreter importing SQLAlchemy, paho and pydantic on a busy CI


class CollectorProcess:
    """One run of the collector process; every run appends to the same log file."""

    def __init__(
        self,
        *,
        broker_url: str,
        db_url: str,
        log_path: Path,
        client_id: str | None = "fault-collector",
        failpoints: str | None = None,
        log_level: str = "info",
        username: str | None = None,
        mqtt_client: str | None = None,
        options: Sequence[str] = (),
    ) -> None:
        """`username` None: the command's default (`collector`); "" logs in anonymously.
        `mqtt_client`: `--mqtt-client` (None: the command's default). `options`: more of the
        command's options (e.g. its per-gate limits). `client_id` None: the command's default
        (an id of its own for each process)."""
        env = {k: v for k, v in os.environ.items() if k != FAILPOINTS_ENV}
        env["PYTHONUNBUFFERED"] = "1"
        if failpoints is not None:
            env[FAILPOINTS_ENV] = failpoints
        log_path.parent.mkdir(parents=True, exist_ok=True)
        login = [] if username is None else ["--username", username]
        if client_id is not None:
            login += ["--client-id", client_id]
        if mqtt_client is not None:
            login += ["--mqtt-client", mqtt_client]
        with log_path.open("ab") as log:
            self._log_start = log.tell()  # this run's lines start here
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gatescan.cli", "--log-level", log_level, "collector",
                 "--broker", broker_url, "--db", db_url, *login,
                 *options],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )  # fmt: skip
        self.log_path = log_path
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        """What this run has logged so far."""
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            return log.read().decode("utf-8", errors="replace")

    def wait_for_log(self, text: str, timeout: float = START_TIMEOUT_S) -> None:
        """Poll this run's log until it holds `text`; fail if the process exits first."""
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if not self.running():
                raise AssertionError(f"the collector exited:\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} after {timeout} s:\n{self.log_text()[-3000:]}")
            time.sleep(0.02)  # a log file to poll: there is no event to wait on

    def wait_until_subscribed(self, timeout: float = START_TIMEOUT_S) -> CollectorProcess:
        self.wait_for_log(SUBSCRIBED, timeout)
        return self

    def last_log_line(self) -> str:
        lines = self.log_text().strip().splitlines()
        return lines[-1] if lines else ""

    def wait_for_exit(self, timeout: float = START_TIMEOUT_S) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"the collector did not exit:\n{self.log_text()[-3000:]}"
            ) from None

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed, the open transaction is not committed."""
        if self.running():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=START_TIMEOUT_S)

    def stop(self) -> int:
        """SIGTERM, as systemd stops the service: a clean exit returns 0."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
        return self.wait_for_exit()

    def rss_kib(self) -> int | None:
        """The process's resident memory (Linux /proc), or None where it cannot be read."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return None
