"""A gate agent (build_agent's wiring) running in a thread of the test's process: QR images
through the replay camera and real decoders, its door relay on gpiozero MockFactory pins, and
every scan it made kept with the time it was made."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from device.app import Agent, build_agent
from device.scanner import Scan
from device.system.clock import FixedSyncClock
from device.system.systemd_notify import SystemdNotifier
from firmware_config.loader import ConfigOverrides, load_config
from gatescan.testing.samples import write_replay_folder
from protocol.verdicts import Reason, VerdictStatus

RELAY_PIN = 5


@dataclass(frozen=True)
class Seen:
    at: float  # monotonic
    code: bytes
    status: VerdictStatus
    reason: Reason


class GateThread:
    def __init__(self, agent: Agent, factory: MockFactory) -> None:
        self.agent = agent
        self.factory = factory
        self.scans: list[Seen] = []
        self._lock = threading.Lock()

    def on_scan(self, scan: Scan) -> None:
        seen = Seen(time.monotonic(), scan.code.data, scan.verdict.status, scan.verdict.reason)
        with self._lock:
            self.scans.append(seen)

    def first_after(self, moment: float, code: bytes) -> Seen | None:
        with self._lock:
            return next((s for s in self.scans if s.at > moment and s.code == code), None)

    def seen(self, since: float) -> list[Seen]:
        """Every scan made after `since` (monotonic), in order."""
        with self._lock:
            return [s for s in self.scans if s.at > since]

    def relay_rises(self, since: float) -> list[float]:
        """When the relay pin went high since its states were cleared at `since` (monotonic)."""
        pin = self.factory.pin(RELAY_PIN)
        moment, rises = since, []
        for state in pin.states[1:]:
            moment += state.timestamp
            if state.state:
                rises.append(moment)
        return rises


@contextmanager
def running_gate(
    folder: Path,
    *,
    broker_url: str,
    device_id: str,
    site_id: str,
    frames: list[bytes | None],
    mode: str = "access",
    direction: str = "in",
    repeat_window: float = 1.0,
    fps: int = 10,
) -> Iterator[GateThread]:
    """The gate, scanning `frames` in a loop until the block ends (then stopped cleanly)."""
    write_replay_folder(folder / "frames", frames, frame_size=(640, 480))
    config_file = folder / "gate.toml"
    config_file.write_text(
        f'site_id = "{site_id}"\ndirection = "{direction}"\n[policy]\nmode = "{mode}"\n'
        f"[decoder]\nrepeat_window = {repeat_window}\n"
        f"[indicator]\nrelay = {RELAY_PIN}\nrelay_seconds = 0.1\n",
        encoding="utf-8",
    )
    config = load_config(
        config_file,
        overrides=ConfigOverrides(
            source=f"replay:{folder / 'frames'}?loop=true&hold=0.15&fps={fps}",
            broker=broker_url,
            device_id=device_id,
            data_dir=folder / "data",
        ),
        env={},
    )
    factory = MockFactory()
    gates: list[GateThread] = []
    agent = build_agent(
        config,
        pin_factory=factory,
        clock=FixedSyncClock(),
        notifier=SystemdNotifier(None),
        on_scan=lambda scan: gates[0].on_scan(scan),
    )
    gate = GateThread(agent, factory)
    gates.append(gate)
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), name=f"agent-{device_id}")
    thread.start()
    try:
        yield gate
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive(), f"{device_id} did not stop"
