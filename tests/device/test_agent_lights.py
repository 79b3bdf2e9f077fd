"""The light of a whole agent (build_agent's wiring, gpiozero MockFactory pins) follows real
causes: a broker name that does not resolve, a clock that is not synchronised."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from device.app import Agent, build_agent
from device.indicator.base import IndicatorState, TeeIndicator
from device.indicator.gpio import GpioIndicator
from device.system.clock import FixedSyncClock
from device.system.systemd_notify import SystemdNotifier
from firmware_config.loader import ConfigOverrides, load_config
from gatescan.testing.broker import LocalBroker
from gatescan.testing.samples import write_replay_folder
from tests.support.waiting import wait_until


@contextmanager
def running_agent(tmp_path: Path, broker_url: str, synced: bool = True) -> Iterator[Agent]:
    write_replay_folder(tmp_path / "frames", [None], frame_size=(320, 240))
    config = load_config(
        overrides=ConfigOverrides(
            source=f"replay:{tmp_path / 'frames'}?loop=true",
            broker=broker_url,
            data_dir=tmp_path / "gate",
        ),
        env={},
    )
    agent = build_agent(
        config,
        pin_factory=MockFactory(),
        clock=FixedSyncClock(synced=synced),
        notifier=SystemdNotifier(None),
    )
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), name="agent")
    thread.start()
    try:
        yield agent
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()


def light(agent: Agent) -> IndicatorState:
    assert isinstance(agent.indicator, TeeIndicator)
    gpio = agent.indicator.indicators[0]
    assert isinstance(gpio, GpioIndicator)
    return gpio.state


def test_a_broker_name_that_does_not_resolve_shows_no_network(tmp_path: Path) -> None:
    with running_agent(tmp_path, "mqtt://gate-broker.invalid:1883") as agent:
        wait_until(lambda: light(agent) is IndicatorState.NO_NETWORK, 15, "the no-network light")


def test_an_unsynchronised_clock_shows_while_online(broker: LocalBroker, tmp_path: Path) -> None:
    with running_agent(tmp_path, broker.url, synced=False) as agent:
        wait_until(lambda: agent.health.online, 15, "online")
        wait_until(
            lambda: light(agent) is IndicatorState.CLOCK_UNSYNCED, 5, "the clock_unsynced light"
        )


def test_a_synchronised_online_gate_is_dark(broker: LocalBroker, tmp_path: Path) -> None:
    with running_agent(tmp_path, broker.url) as agent:
        wait_until(lambda: agent.health.online, 15, "online")
        wait_until(lambda: light(agent) is IndicatorState.IDLE, 5, "the running light (off)")
