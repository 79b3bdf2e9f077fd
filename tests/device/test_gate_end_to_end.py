"""One gate end to end on real parts: replayed frames -> real zbar -> journal -> real Mosquitto ->
collector -> SQLite -> ack -> outbox empty. The agent runs as its own process (`gatescan agent`)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from device.journal.journal import Journal
from gatescan.testing.broker import LocalBroker
from gatescan.testing.samples import cccd_payload, write_replay_folder
from protocol.topics import Topic, device_topic
from server.collector.service import Collector
from server.store.database import Store
from tests.support.waiting import wait_until

DEVICE = "gate-e2e"
KEEPALIVE = 2

PAYLOADS: list[bytes] = [
    cccd_payload(
        "079193012345",
        "Nguyễn Thị Thu Uyên",
        "05061993",
        "Nữ",
        "Số 12 Ngõ 34 Phố Huế, Hai Bà Trưng, Hà Nội",
        "21042021",
        old_id="272345678",
    ),
    cccd_payload(
        "001090012345",
        "Trần Văn Đức",
        "01011990",
        "Nam",
        "Thôn Đông, Xã Yên Sở, Hoài Đức, Hà Nội",
        "15082021",
        six_field=True,
    ),
    cccd_payload("038190000123", "Uyên", "01011990", "Nữ", "Huế", "15082021"),
    "Lý Ơn".encode(),
    b"https://example.vn/pass/42",
]


class Watcher:
    """A plain MQTT client that remembers the last payload on each topic."""

    def __init__(self, broker: LocalBroker, topic: str) -> None:
        self.last: dict[str, bytes] = {}
        self.seen_at: dict[bytes, float] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.last[msg.topic] = msg.payload
            self.seen_at.setdefault(msg.payload, time.monotonic())

    def state(self, topic: str) -> str | None:
        with self._lock:
            payload = self.last.get(topic)
        return None if payload is None else json.loads(payload)["state"]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def collector(broker: LocalBroker, tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'collector.db'}")
    running = Collector(broker_url=broker.url, store=store, client_id="e2e-collector")
    running.start()
    yield store
    running.stop()


def start_agent(tmp_path: Path, broker: LocalBroker) -> subprocess.Popen[bytes]:
    replay = tmp_path / "replay"
    if not replay.exists():
        # Each code, then a frame with nothing, then the same code again (one showing).
        frames: list[bytes | None] = []
        for payload in PAYLOADS:
            frames += [payload, None]
        write_replay_folder(replay, frames)
    config = tmp_path / "gate.toml"
    config.write_text(
        f'[camera]\ntype = "replay"\nfolder = "{replay}"\nfps = 20\nhold = 0.3\n'
        f"[mqtt]\nkeepalive = {KEEPALIVE}\nresend_after = 2\ntelemetry_interval = 1\n"
        "[indicator]\nenabled = true\n",
        encoding="utf-8",
    )
    command = [
        sys.executable,
        "-m",
        "gatescan.cli",
        "agent",
        "--config",
        str(config),
        "--broker",
        broker.url,
        "--device-id",
        DEVICE,
        "--data-dir",
        str(tmp_path / "gate"),
    ]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def outbox_depth(watcher: Watcher, topic: str) -> int | None:
    with watcher._lock:
        payload = watcher.last.get(topic)
    return None if payload is None else int(json.loads(payload)["outbox_depth"])


def stored_names(store: Store) -> list[str]:
    return [entry.subject_name for entry in store.entries(device_id=DEVICE)]


def test_every_code_is_stored_once_with_exact_text_and_the_outbox_empties(
    broker: LocalBroker, collector: Store, tmp_path: Path
) -> None:
    status_topic = device_topic(DEVICE, Topic.STATUS)
    agent = start_agent(tmp_path, broker)
    try:
        wait_until(lambda: collector.count_entries() >= len(PAYLOADS), 30, "all entries stored")
        # Subscribes late: must still get the retained status.
        watcher = Watcher(broker, f"gatescan/v1/devices/{DEVICE}/#")
        wait_until(lambda: watcher.state(status_topic) == "online", 5, "retained online status")
        telemetry_topic = device_topic(DEVICE, Topic.TELEMETRY)
        wait_until(lambda: outbox_depth(watcher, telemetry_topic) == 0, 10, "an empty outbox")
        watcher.close()
    finally:
        agent.send_signal(signal.SIGTERM)
        output = agent.communicate(timeout=20)[0].decode("utf-8", "replace")
    assert agent.returncode == 0, output
    entries = list(collector.entries(device_id=DEVICE))
    assert len(entries) == len(PAYLOADS), output
    assert sorted(e.code_sha256 for e in entries) == sorted(
        hashlib.sha256(p).hexdigest() for p in PAYLOADS
    )
    names = stored_names(collector)
    assert "Nguyễn Thị Thu Uyên" in names
    assert "Trần Văn Đức" in names
    assert "Uyên" in names
    assert [e.seq for e in sorted(entries, key=lambda e: e.seq)] == list(range(1, 6))
    journal = Journal(tmp_path / "gate")
    try:
        assert journal.outbox_depth() == 0
    finally:
        journal.close()


def test_broker_publishes_offline_within_one_and_a_half_keepalives_after_sigkill(
    broker: LocalBroker, collector: Store, tmp_path: Path
) -> None:
    status_topic = device_topic(DEVICE, Topic.STATUS)
    watcher = Watcher(broker, status_topic)
    agent = start_agent(tmp_path, broker)
    try:
        wait_until(lambda: watcher.state(status_topic) == "online", 15, "online status")
        agent.kill()
        killed_at = time.monotonic()
        agent.wait(timeout=5)
        wait_until(
            lambda: watcher.state(status_topic) == "offline", 3 * KEEPALIVE, "offline last will"
        )
        delay = time.monotonic() - killed_at
    finally:
        watcher.close()
        if agent.poll() is None:
            agent.kill()
    assert delay <= 1.5 * KEEPALIVE + 0.5, f"last will after {delay:.2f} s"
