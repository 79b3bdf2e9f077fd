"""A site for the remote-command tests (issue 17): the real Mosquitto with the ACL file the repo
ships (deploy/mosquitto/gatescan.acl, used in place) and users made by mosquitto_passwd, the
collector on a real SQLite store, and a gate agent (build_agent's wiring) logged in as its device
id, on the replay camera and gpiozero MockFactory pins, its config in a file it can read again."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory

from device.app import Agent, build_agent
from device.system.clock import FixedSyncClock
from device.system.systemd_notify import SystemdNotifier
from firmware_config.loader import ConfigOverrides, load_config
from firmware_config.schema import GateConfig
from gatescan.testing.broker import BrokerAccess, LocalBroker, write_password_file
from gatescan.testing.samples import write_replay_folder
from server.clock import utc_now
from server.collector.service import Collector
from server.store.database import Store
from server.store.gate_commands import FINAL, CommandRequest, CommandRow, GateCommands
from tests.support.paths import PROJECT_ROOT
from tests.support.waiting import wait_until

ACL_FILE = PROJECT_ROOT / "deploy" / "mosquitto" / "gatescan.acl"
GATE, OTHER_GATE, COLLECTOR_USER = "gate-a", "gate-b", "collector"
PASSWORDS = {GATE: "a-secret", OTHER_GATE: "b-secret", COLLECTOR_USER: "collector-secret"}
GREEN, RED, BUZZER, RELAY = 17, 27, 22, 23
GATE_TOML = f"""
device_id = "{GATE}"
site_id = "hq"
[indicator]
green = {GREEN}
red = {RED}
buzzer = {BUZZER}
relay = {RELAY}
relay_seconds = 0.5
[mqtt]
username = "{GATE}"
password_file = "password"
"""


@contextmanager
def acl_broker(folder: Path) -> Iterator[LocalBroker]:
    access = BrokerAccess(
        password_file=write_password_file(folder / "passwd", PASSWORDS),
        acl_file=ACL_FILE,
        allow_anonymous=False,
        username_as_client_id=True,
    )
    with LocalBroker(workdir=folder / "broker", access=access) as broker:
        yield broker


@contextmanager
def running_collector(broker: LocalBroker, store: Store) -> Iterator[Collector]:
    collector = Collector(
        broker_url=broker.url,
        store=store,
        client_id=COLLECTOR_USER,
        username=COLLECTOR_USER,
        password=PASSWORDS[COLLECTOR_USER],
    )
    collector.start()
    try:
        assert collector.wait_until_subscribed(10), broker.log_text()
        yield collector
    finally:
        collector.stop()


@dataclass
class RunningGate:
    agent: Agent
    pins: MockFactory
    config_file: Path
    thread: threading.Thread

    def rises(self, pin: int, since: float) -> list[float]:
        """When `pin` went high (monotonic), its states cleared at `since`."""
        moment, found = since, []
        for state in self.pins.pin(pin).states[1:]:
            moment += state.timestamp
            if state.state:
                found.append(moment)
        return found

    def clear_pins(self) -> float:
        now = time.monotonic()
        for pin in (GREEN, RED, BUZZER, RELAY):
            self.pins.pin(pin).clear_states()
        return now


@contextmanager
def running_gate(folder: Path, broker: LocalBroker) -> Iterator[RunningGate]:
    folder.mkdir(parents=True, exist_ok=True)
    write_replay_folder(folder / "frames", [None], frame_size=(320, 240))
    (folder / "password").write_text(PASSWORDS[GATE], encoding="utf-8")
    config_file = folder / "gate.toml"
    config_file.write_text(GATE_TOML, encoding="utf-8")
    overrides = ConfigOverrides(
        source=f"replay:{folder / 'frames'}?loop=true&fps=20",
        broker=broker.url,
        data_dir=folder / "data",
    )

    def load(pushed: Mapping[str, Any] | None = None) -> GateConfig:
        return load_config(config_file, overrides=overrides, env={}, pushed=pushed)

    pins = MockFactory()
    agent = build_agent(
        load(),
        pin_factory=pins,
        clock=FixedSyncClock(),
        notifier=SystemdNotifier(None),
        load=load,
        update_result=folder / "updater" / "result.json",  # never the machine's own
    )
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), name="agent-remote")
    thread.start()
    try:
        wait_until(lambda: agent.health.online, 15, "the gate online")
        yield RunningGate(agent, pins, config_file, thread)
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()


def ask(
    store: Store,
    action: str,
    args: dict[str, object] | None = None,
    *,
    device_id: str = GATE,
    command_id: str | None = None,
    at: datetime | None = None,
) -> str:
    """A command written as the dashboard and `gatescan gate command` write it."""
    command_id = command_id or f"cmd-{action}-{time.monotonic_ns()}"
    GateCommands(store.engine).request(
        CommandRequest(
            command_id=command_id,
            device_id=device_id,
            site_id="hq",
            action=action,
            args=args or {},
            requested_by="alice",
            requested_at=at or utc_now(),
        )
    )
    return command_id


def answered(store: Store, command_id: str, timeout: float = 15.0) -> CommandRow:
    """The command's row once its answer is final."""
    rows = GateCommands(store.engine)

    def final() -> CommandRow | None:
        row = rows.get(command_id)
        return row if row is not None and row.status in FINAL else None

    wait_until(lambda: final() is not None, timeout, f"the final answer to {command_id}")
    row = final()
    assert row is not None
    return row
