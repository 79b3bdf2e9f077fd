"""`gatescan collector` in its own process, as a site runs it: for the benchmarks that need the
real collector (bench/ingest_site.py, bench/flush_bench.py)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from gatescan.broker import LocalBroker

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # `python -m gatescan.cli` runs from here


class CollectorProcess:
    """The collector on `broker` (anonymous), storing into SQLite `db`, logging to `log_path`."""

    def __init__(self, broker: LocalBroker, db: Path, log_path: Path) -> None:
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gatescan.cli", "--log-level", "info", "collector",
             "--broker", broker.url, "--db", f"sqlite:///{db}", "--username", "",
             "--client-id", f"bench-collector-{secrets.token_hex(3)}"],
            cwd=PROJECT_ROOT, stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        self.log_path = log_path
        deadline = time.monotonic() + 60
        while "subscribed to" not in log_path.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the collector did not start:\n{log_path.read_text()}")
            time.sleep(0.05)  # a log file to poll: there is nothing to wait on

    def stop(self) -> str:
        """SIGTERM (it commits and acks what it holds), then its last log line."""
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""
