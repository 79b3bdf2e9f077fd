"""The whole site for the browser tests, as real processes: Mosquitto (LocalBroker),
`gatescan server` (collector + dashboard on a free port), gates as `gatescan agent` processes
watching a replay folder, and a user made with `gatescan user add`.

A gate's replay folder holds one image that the agent shows again and again (`loop = true`);
`Gate.show()` replaces that image atomically, which is a person holding a code up to the camera.
The code stays in view until the next `show()`, so the gate's repeat window makes it one entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from sqlalchemy.engine import URL

from device.decode.backends import make_decoder
from gatescan.testing.broker import LocalBroker
from gatescan.testing.samples import blank_frame, render_code
from server.store.database import Store, StoredEntry
from tests.support.fault_site import LoggedProcess
from tests.support.paths import PROJECT_ROOT
from tests.support.waiting import wait_until
from tests.support.web import db_option

FRAME_SIZE = (360, 360)  # room for an ID card's code (version 7) at 4 px per module
MODULE_PX = 4
START_TIMEOUT_S = 60.0  # two cores shared with other suites: a cold start of Python + OpenCV


def free_port() -> int:
    """A TCP port nobody listens on now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def gatescan_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "gatescan.cli", *args]


def frame_png(payload: bytes | None) -> bytes:
    """A PNG frame showing `payload` (None: an empty lane), checked with the gate's decoder."""
    if payload is None:
        frame = blank_frame(FRAME_SIZE)
    else:
        frame = render_code(payload, frame_size=FRAME_SIZE, module_px=MODULE_PX)
        decoded = [code.data for code in make_decoder("pyzbar").decode(frame)]
        if decoded != [payload]:
            raise ValueError(f"the frame does not decode to its payload: {decoded!r}")
    ok, png = cv2.imencode(".png", frame)
    if not ok:
        raise RuntimeError("OpenCV could not encode the frame")
    return png.tobytes()


@dataclass
class Gate:
    """One gate agent and the image in front of its camera."""

    device_id: str
    site_id: str
    location: str
    direction: str
    root: Path
    process: LoggedProcess | None = None

    @property
    def image(self) -> Path:
        return self.root / "replay" / "frame.png"

    def show(self, payload: bytes | None) -> None:
        """Hold `payload` up to the camera (None: step away). Atomic: the agent reads either the
        old image or the new one, never half a file."""
        self.image.parent.mkdir(parents=True, exist_ok=True)
        partial = self.image.with_suffix(".partial")  # not an image suffix: replay skips it
        partial.write_bytes(frame_png(payload))
        os.replace(partial, self.image)

    def config_text(self) -> str:
        return (
            f"site_id = {json.dumps(self.site_id)}\n"
            f"location = {json.dumps(self.location, ensure_ascii=False)}\n"
            f'direction = "{self.direction}"\n'
            "[camera]\n"
            'type = "replay"\n'
            f"folder = {json.dumps(str(self.image.parent))}\n"
            "fps = 8\n"
            "hold = 0.25\n"
            "loop = true\n"
            "[policy]\n"
            "record_raw_text = true\n"
            "[mqtt]\n"
            "keepalive = 2\n"  # the broker publishes the last will ~3 s after a kill
            "resend_after = 2\n"
            "telemetry_interval = 1\n"
            "[indicator]\n"
            "enabled = true\n"
        )

    def start(self, broker: LocalBroker) -> LoggedProcess:
        if not self.image.exists():
            self.show(None)
        config = self.root / "gate.toml"
        config.write_text(self.config_text(), encoding="utf-8")
        self.process = LoggedProcess(
            gatescan_command(
                "agent", "--config", str(config), "--broker", broker.url,
                "--device-id", self.device_id, "--data-dir", str(self.root / "data"),
            ),
            self.root / "agent.log",
        )  # fmt: skip
        return self.process

    def kill(self) -> None:
        """SIGKILL: the gate vanishes without a word; the broker publishes its last will."""
        assert self.process is not None
        self.process.kill()


@dataclass
class Site:
    """A running site: broker, `gatescan server`, gates, and a manager's login."""

    root: Path
    broker: LocalBroker
    db: Path | URL  # a SQLite file or a PostgreSQL database
    url: str
    server: LoggedProcess
    username: str
    password: str
    gates: dict[str, Gate] = field(default_factory=dict)
    _store: Store | None = None

    @property
    def store(self) -> Store:
        """The collector's database as the test reads it (the server writes it)."""
        if self._store is None:
            self._store = Store(self.db)
        return self._store

    def entries_of(self, code: bytes) -> list[StoredEntry]:
        digest = hashlib.sha256(code).hexdigest()
        return [entry for entry in self.store.entries() if entry.code_sha256 == digest]

    def show_and_wait(self, device_id: str, code: bytes, timeout: float = 30) -> StoredEntry:
        """Show `code` at a gate and wait until the server has stored an entry for it (an entry
        from an earlier showing counts: the gate's repeat window may merge two close ones)."""
        self.gates[device_id].show(code)
        return wait_until(
            lambda: next(iter(self.entries_of(code)), None), timeout, f"{code[:40]!r} stored"
        )

    def add_gate(self, device_id: str, site_id: str, location: str, direction: str) -> Gate:
        gate = Gate(device_id, site_id, location, direction, self.root / device_id)
        gate.start(self.broker)
        self.gates[device_id] = gate
        return gate

    def close(self) -> None:
        for gate in self.gates.values():
            if gate.process is not None and gate.process.running():
                gate.process.stop()
        if self.server.running():
            self.server.stop()
        if self._store is not None:
            self._store.close()


def add_user(db: Path | URL, name: str, role: str, password: str, log: Path) -> None:
    """`gatescan user add NAME --role ROLE`, the password given on stdin as a script would."""
    result = subprocess.run(
        gatescan_command("user", "add", name, "--role", role, "--db", db_option(db)),
        input=password + "\n",
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=START_TIMEOUT_S,
        check=False,
    )
    log.write_text(result.stdout + result.stderr, encoding="utf-8")
    if result.returncode != 0:
        raise AssertionError(f"gatescan user add failed ({result.returncode}):\n{result.stderr}")


def start_server(
    root: Path, broker: LocalBroker, db: Path | URL, settings: list[str]
) -> tuple[LoggedProcess, str]:
    """`gatescan server` on a free port, returned once its login page answers."""
    port = free_port()
    server = LoggedProcess(
        gatescan_command(
            "server", "--broker", broker.url, "--db", db_option(db),
            "--listen", f"127.0.0.1:{port}", *settings,
        ),
        root / "server.log",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if not server.running():
            raise AssertionError(f"gatescan server exited:\n{server.log_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/login", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    wait_until(answers, START_TIMEOUT_S, "gatescan server to answer", interval=0.2)
    return server, url
