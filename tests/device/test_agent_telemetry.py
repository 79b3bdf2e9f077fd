"""A whole agent's telemetry carries the machine's readings (read from a Pi's files kept as test
data, tests/data/pi_system/) to the collector over the real broker, which keeps them with the
gate's row; and the agent keeps its last telemetry in its data dir for `gatescan doctor`."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from device.app import LAST_TELEMETRY_FILE, Agent, build_agent
from device.system.clock import FixedSyncClock
from device.system.facts import SystemFacts
from device.system.systemd_notify import SystemdNotifier
from firmware_config.loader import ConfigOverrides, load_config
from firmware_config.schema import config_hash
from gatescan.testing.broker import LocalBroker
from gatescan.testing.samples import write_replay_folder
from server.collector.service import Collector
from server.store.database import Store
from tests.support.paths import PROJECT_ROOT
from tests.support.waiting import wait_until

PI5 = PROJECT_ROOT / "tests" / "data" / "pi_system" / "pi5_wifi"


@pytest.fixture
def agent(tmp_path: Path, broker: LocalBroker) -> Iterator[Agent]:
    write_replay_folder(tmp_path / "frames", [None], frame_size=(320, 240))
    config_file = tmp_path / "gate.toml"
    config_file.write_text('device_id = "gate-facts"\n[mqtt]\ntelemetry_interval = 1\n')
    config = load_config(
        config_file,
        overrides=ConfigOverrides(
            source=f"replay:{tmp_path / 'frames'}?loop=true",
            broker=broker.url,
            data_dir=tmp_path / "gate",
        ),
        env={},
    )
    running = build_agent(
        config,
        pin_factory=MockFactory(),
        clock=FixedSyncClock(),
        notifier=SystemdNotifier(None),
        facts=SystemFacts(PI5, vcgencmd=lambda: None),
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


def test_the_machines_readings_reach_the_collector(
    agent: Agent, broker: LocalBroker, tmp_path: Path
) -> None:
    with Store(tmp_path / "server.db") as store:
        collector = Collector(broker_url=broker.url, store=store)
        collector.start()
        try:
            assert collector.wait_until_subscribed(10)
            wait_until(lambda: any(d.telemetry for d in store.devices()), 10, "a telemetry stored")
        finally:
            collector.stop()
        [device] = store.devices()
    kept = device.telemetry
    assert kept is not None
    assert kept["addresses"] == [
        {"interface": "wlan0", "address": "192.168.1.57"},
        {"interface": "wlan0", "address": "2001:db8:0:10:5e2e:1c5a:3b7d:9f10"},
    ]
    assert (kept["wifi_signal_dbm"], kept["cpu_temp_c"], kept["throttling"]) == (-56, 52.6, [])
    assert kept["system_uptime_s"] == 86523.41
    assert 0 < kept["disk_free_bytes"] <= kept["disk_total_bytes"]  # the data dir's disk
    assert kept["config_hash"] == config_hash(agent.config)
    # No site: no site policy held.
    assert (kept["policy_version"], kept["policy_key_ids"], kept["list_versions"]) == (
        None,
        None,
        None,
    )

    last = json.loads((Path(agent.config.data_dir) / LAST_TELEMETRY_FILE).read_bytes())
    assert last["link"] == "up"
    assert last["telemetry"]["cpu_temp_c"] == 52.6


def test_the_config_hash_follows_the_config(agent: Agent) -> None:
    same = agent.config.model_copy()
    other = agent.config.model_copy(update={"location": "Cổng phụ"})

    assert config_hash(same) == agent.config_hash
    secret = agent.config.model_copy(update={"mqtt": agent.config.mqtt.with_password("s" * 20)})
    assert config_hash(secret) == agent.config_hash  # the password is never part of it
    assert config_hash(other) != agent.config_hash
    assert len(agent.config_hash) == 16
