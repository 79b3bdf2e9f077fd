"""The real agent (device/app.py: build_agent) writes the health file the updater judges a
release by: its pid and version, its first processed frame, its broker connection."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from device.app import build_agent
from device.system.clock import FixedSyncClock
from device.system.systemd_notify import SystemdNotifier
from device.update.health import AgentHealth, read_health
from firmware_config.loader import ConfigOverrides, load_config
from gatescan.testing.broker import LocalBroker, free_port
from gatescan.testing.samples import write_replay_folder
from protocol.release import __version__
from tests.support.waiting import wait_until


@contextmanager
def running_agent(tmp_path: Path, broker_url: str) -> Iterator[Path]:
    write_replay_folder(tmp_path / "frames", [None], frame_size=(320, 240))
    config_file = tmp_path / "gate.toml"
    config_file.write_text('device_id = "gate-health"\n')
    data_dir = tmp_path / "gate"
    config = load_config(
        config_file,
        overrides=ConfigOverrides(
            source=f"replay:{tmp_path / 'frames'}?loop=true",
            broker=broker_url,
            data_dir=data_dir,
        ),
        env={},
    )
    agent = build_agent(
        config, pin_factory=MockFactory(), clock=FixedSyncClock(), notifier=SystemdNotifier(None)
    )
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), name="agent")
    thread.start()
    try:
        yield data_dir
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()


def test_the_agent_reports_its_first_frame_and_its_broker(
    tmp_path: Path, broker: LocalBroker
) -> None:
    started = time.time()
    with running_agent(tmp_path, broker.url) as data_dir:
        health: AgentHealth = wait_until(
            lambda: (h := read_health(data_dir)) and h.broker_at and h.frame_at and h,
            15,
            "a frame and the broker in the health file",
        )
    assert health.healthy_as(__version__, os.getpid())
    assert health.frame_at is not None and health.broker_at is not None
    print(
        f"the real agent (replay camera, local Mosquitto): a frame {health.frame_at - started:.2f}"
        f" s and the broker {health.broker_at - started:.2f} s after it was built"
    )
    assert not health.healthy_as("0.0.1", os.getpid())  # another release's is not this one's


def test_an_agent_that_cannot_reach_its_broker_is_not_healthy(tmp_path: Path) -> None:
    with running_agent(tmp_path, f"mqtt://127.0.0.1:{free_port()}") as data_dir:
        health = wait_until(
            lambda: (h := read_health(data_dir)) and h.frame_at and h, 15, "a processed frame"
        )
        threading.Event().wait(2)  # time enough to connect, had there been a broker
        health = read_health(data_dir)
    assert health is not None and health.broker_at is None
    assert health.missing() == ["the broker connection"]
    assert not health.healthy_as(__version__, os.getpid())
