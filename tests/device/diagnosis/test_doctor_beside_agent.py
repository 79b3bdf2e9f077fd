"""`gatescan doctor` beside a running agent (build_agent's wiring, the replay camera, the real
broker, MockFactory pins): the agent holds the camera, the pins and the broker login, so the
doctor reads the agent's own state instead of taking them (and never knocks it off the
broker)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from device.app import LAST_TELEMETRY_FILE, Agent, build_agent
from device.diagnosis.doctor import Surroundings, diagnose, exit_status
from device.diagnosis.findings import Level
from device.system.clock import FixedSyncClock
from device.system.systemd_notify import SystemdNotifier
from firmware_config.loader import load_config
from gatescan.testing.broker import LocalBroker
from gatescan.testing.samples import write_replay_folder
from tests.support.waiting import wait_until


@pytest.fixture
def config_file(tmp_path: Path, broker: LocalBroker) -> Path:
    write_replay_folder(tmp_path / "frames", [None], frame_size=(320, 240))
    path = tmp_path / "gate.toml"
    path.write_text(
        'device_id = "gate-busy"\ndata_dir = "data"\n'
        '[camera]\ntype = "replay"\nfolder = "frames"\nloop = true\n'
        f'[mqtt]\nbroker = "{broker.url}"\ntelemetry_interval = 1\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture
def agent(config_file: Path) -> Iterator[Agent]:
    running = build_agent(
        load_config(config_file, env={}),
        pin_factory=MockFactory(),
        clock=FixedSyncClock(),
        notifier=SystemdNotifier(None),
    )
    stop = threading.Event()
    thread = threading.Thread(target=running.run, args=(stop,), name="agent")
    thread.start()
    try:
        yield running
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()


def test_the_doctor_reads_the_running_agent_instead_of_taking_its_parts(
    agent: Agent, config_file: Path, tmp_path: Path
) -> None:
    data_dir = Path(agent.config.data_dir)
    wait_until(lambda: (data_dir / LAST_TELEMETRY_FILE).exists(), 10, "the agent's telemetry")
    wait_until(lambda: agent.telemetry().fps > 0, 10, "frames decoded")
    flag = tmp_path / "synchronized"
    flag.touch()
    pins = MockFactory()

    findings = diagnose(config_file, None, Surroundings(pin_factory=pins, timesyncd_flag=flag))
    found = {finding.name: finding for finding in findings}

    assert found["mqtt"].level is Level.OK
    assert found["mqtt"].found.startswith("the running agent is connected (its last telemetry")
    assert found["camera"].level is Level.OK
    assert "held by the running agent" in found["camera"].found
    assert " fps over its last telemetry interval" in found["camera"].found
    assert found["gpio"].found.startswith("held by the running agent: green 17")
    assert pins.pins == {}, "no pin claimed beside the agent"
    assert found["journal"].level is Level.OK
    assert exit_status(findings) == 0, "\n".join(f.line() for f in findings)
    assert agent.health.online, "the agent kept its broker connection"


def test_a_stopped_agents_journal_is_not_held(config_file: Path, broker: LocalBroker) -> None:
    """Once the agent has stopped, the same doctor takes the camera and logs in itself."""
    findings = diagnose(config_file, None, Surroundings(pin_factory=MockFactory()))
    found = {finding.name: finding for finding in findings}

    assert found["mqtt"].found.startswith("the broker accepted an anonymous login")
    assert "frames in" in found["camera"].found
