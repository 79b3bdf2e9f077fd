"""The door of a whole agent (build_agent's wiring, gpiozero MockFactory pins, the real broker): a
fire alarm is the `fire_alarm` flag in the gate's retained status and its light while it lasts,
and each release by the alarm, the guard's button or a manager's command is counted in the
telemetry."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from gpiozero.pins.mock import MockFactory
from paho.mqtt.enums import CallbackAPIVersion

from device.app import Agent, build_agent
from device.indicator.base import IndicatorState, TeeIndicator
from device.indicator.gpio import GpioIndicator
from device.system.clock import FixedSyncClock
from device.system.health import Fault
from device.system.systemd_notify import SystemdNotifier
from firmware_config.loader import ConfigOverrides, load_config
from gatescan.testing.broker import LocalBroker
from gatescan.testing.samples import write_replay_folder
from protocol.messages import Status
from protocol.topics import Topic, device_topic
from server.collector.commands import door_releaser
from server.collector.service import Collector
from server.store.database import Store
from tests.support.waiting import wait_until

RELAY, FIRE, BUTTON = 23, 5, 6
GATE_TOML = f"""
device_id = "gate-door"
[indicator]
relay = {RELAY}
relay_seconds = 2
[indicator.door]
fail = "safe"
fire_alarm_pin = {FIRE}
release_button_pin = {BUTTON}
"""


class StatusWatch:
    """A plain paho client reading the gate's retained status, as the collector does."""

    def __init__(self, broker: LocalBroker, device_id: str) -> None:
        self.statuses: list[Status] = []
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"watch-{uuid.uuid4().hex[:8]}"
        )
        topic = device_topic(device_id, Topic.STATUS)
        self._client.on_connect = lambda client, *_: client.subscribe(topic, 1)
        self._client.on_message = self._on_message
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.statuses.append(Status.model_validate_json(message.payload))

    def faults(self) -> list[str]:
        return list(self.statuses[-1].faults) if self.statuses else ["(no status yet)"]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def pins() -> MockFactory:
    return MockFactory()


@pytest.fixture
def agent(tmp_path: Path, broker: LocalBroker, pins: MockFactory) -> Iterator[Agent]:
    write_replay_folder(tmp_path / "frames", [None], frame_size=(320, 240))
    config_file = tmp_path / "gate.toml"
    config_file.write_text(GATE_TOML, encoding="utf-8")
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
        config, pin_factory=pins, clock=FixedSyncClock(), notifier=SystemdNotifier(None)
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


def gpio_of(agent: Agent) -> GpioIndicator:
    assert isinstance(agent.indicator, TeeIndicator)
    gpio = agent.indicator.indicators[0]
    assert isinstance(gpio, GpioIndicator)
    return gpio


def test_a_fire_alarm_is_flagged_in_the_retained_status_and_counted(
    agent: Agent, broker: LocalBroker, pins: MockFactory
) -> None:
    relay, fire = pins.pin(RELAY), pins.pin(FIRE)
    wait_until(lambda: agent.health.online, 15, "online")
    watch = StatusWatch(broker, agent.config.device_id)
    try:
        wait_until(lambda: watch.faults() == [], 10, "the first status, no faults")
        assert relay.state, "fail-safe: energised at rest, the door locked"

        fire.drive_low()
        assert not relay.state, "released at once, de-energised"
        wait_until(lambda: watch.faults() == [Fault.FIRE_ALARM], 10, "fire_alarm in the status")
        assert gpio_of(agent).state is IndicatorState.FIRE_ALARM

        fire.drive_high()
        assert relay.state, "locked again"
        wait_until(lambda: watch.faults() == [], 10, "the flag gone from the status")
        wait_until(lambda: gpio_of(agent).state is IndicatorState.IDLE, 5, "the running light")

        pins.pin(BUTTON).drive_low()
        pins.pin(BUTTON).drive_high()
        assert not relay.state, "the button released the door"
        wait_until(lambda: relay.state, 5, "locked again after relay_seconds")

        telemetry = agent.telemetry()
        assert (telemetry.fire_alarm_releases, telemetry.button_releases) == (1, 1)
    finally:
        watch.close()


def test_a_managers_release_from_the_collector_reaches_the_gate_and_releases_its_door(
    agent: Agent, broker: LocalBroker, pins: MockFactory, tmp_path: Path
) -> None:
    """The dashboard's path from the collector on: a `release_door` command over the real broker
    releases the door for relay_seconds and is counted; the same command again opens nothing."""
    relay = pins.pin(RELAY)
    wait_until(lambda: agent.health.online, 15, "online")
    with Store(tmp_path / "server.db") as store:
        collector = Collector(broker_url=broker.url, store=store)
        collector.start()
        try:
            assert collector.wait_until_subscribed(10)
            release = door_releaser(collector)
            assert relay.state, "fail-safe: energised at rest, the door locked"
            assert release(agent.config.device_id, "alice", "cmd-e2e-0001") is None
            wait_until(lambda: not relay.state, 5, "the door released by the command")
            wait_until(lambda: relay.state, 5, "locked again after relay_seconds")
            assert agent.telemetry().dashboard_releases == 1

            # A redelivery, or a replay of the same command: the gate has seen it.
            assert release(agent.config.device_id, "alice", "cmd-e2e-0001") is None
            time.sleep(0.5)
            assert relay.state and agent.telemetry().dashboard_releases == 1
        finally:
            collector.stop()
