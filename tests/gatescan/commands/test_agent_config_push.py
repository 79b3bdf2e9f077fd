"""`gatescan agent` as systemd runs it, with the settings pushed earlier kept in its data dir
(issue 17): after a restart the push lies over the file and the flags over both (the config
hash in its telemetry says what it runs); SIGHUP reads the file again and applies it live; a
kept push that no longer fits the file does not keep the gate from starting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_config.loader import ConfigOverrides, load_config
from firmware_config.pushed import PUSHED_FILE, pushed_bytes
from firmware_config.schema import config_hash
from gatescan.testing.broker import LocalBroker
from gatescan.testing.samples import write_replay_folder
from protocol.topics import Topic, device_topic
from tests.device.test_gate_end_to_end import Watcher
from tests.support.waiting import wait_until

DEVICE = "gate-push"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    with LocalBroker(workdir=tmp_path / "broker") as running:
        yield running


class AgentProcess:
    def __init__(self, folder: Path, broker: LocalBroker, *flags: str) -> None:
        self.folder = folder
        self.config = folder / "gate.toml"
        self.data_dir = folder / "data"
        self.flags = flags
        self.broker = broker
        self.process: subprocess.Popen[bytes] | None = None

    def write(self, text: str) -> None:
        frames = self.folder / "frames"
        if not frames.exists():
            write_replay_folder(frames, [None], frame_size=(160, 120))
        self.config.write_text(
            f'[camera]\ntype = "replay"\nfolder = "{frames}"\nfps = 10\nloop = true\n'
            f"[mqtt]\ntelemetry_interval = 1\n[indicator]\nenabled = false\n{text}",
            encoding="utf-8",
        )

    def start(self) -> None:
        command = [sys.executable, "-m", "gatescan.cli", "agent", "--config", str(self.config)]
        command += ["--broker", self.broker.url, "--device-id", DEVICE]
        command += ["--data-dir", str(self.data_dir), *self.flags]
        self.log = self.folder / "agent.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def output_so_far(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def expected_hash(self, pushed: dict[str, object], mode: str | None = None) -> str:
        overrides = ConfigOverrides(
            broker=self.broker.url, device_id=DEVICE, data_dir=self.data_dir, mode=mode
        )
        return config_hash(load_config(self.config, overrides=overrides, env={}, pushed=pushed))

    def stop(self) -> str:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        output = self.output_so_far()
        assert self.process.returncode == 0, output
        return output


def running_hash(watcher: Watcher) -> str | None:
    with watcher._lock:
        payload = watcher.last.get(device_topic(DEVICE, Topic.TELEMETRY))
    return None if payload is None else str(json.loads(payload)["config_hash"])


def test_after_a_restart_the_push_lies_over_the_file_and_sighup_applies_the_file_live(
    broker: LocalBroker, tmp_path: Path
) -> None:
    gate = AgentProcess(tmp_path, broker, "--mode", "log")
    gate.write("[decoder]\nrepeat_window = 4\n")
    gate.data_dir.mkdir()
    pushed = {"policy.mode": "access", "decoder.repeat_window": 1.5, "direction": "out"}
    (gate.data_dir / PUSHED_FILE).write_bytes(pushed_bytes(pushed))
    watcher = Watcher(broker, f"gatescan/v1/devices/{DEVICE}/#")
    gate.start()
    try:
        # The push over the file, and --mode log over the push.
        expected = gate.expected_hash(pushed, mode="log")
        assert expected != gate.expected_hash(pushed) != gate.expected_hash({})
        wait_until(lambda: running_hash(watcher) == expected, 30, "the pushed config running")

        # A key the push does not name, changed in the file: applied live on SIGHUP.
        text = gate.config.read_text(encoding="utf-8")
        gate.config.write_text(text.replace("interval = 1\n", "interval = 2\n"), encoding="utf-8")
        assert gate.process is not None
        gate.process.send_signal(signal.SIGHUP)
        live = gate.expected_hash(pushed, mode="log")
        assert live != expected
        wait_until(lambda: running_hash(watcher) == live, 15, "the file applied live")

        # A key only a restart applies: named, and the running config stays as it is.
        with gate.config.open("a", encoding="utf-8") as file:
            file.write("[journal]\nretention_days = 10\n")
        gate.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "at the next restart: journal" in gate.output_so_far(), 15, "logged")
        assert running_hash(watcher) == live
    finally:
        watcher.close()
        output = gate.stop()
    assert "SIGHUP: config done: applied live: mqtt.telemetry_interval\n" in output, output
    assert "SIGHUP: config done: nothing to apply live; at the next restart: journal" in output


def test_a_kept_push_that_no_longer_fits_never_keeps_the_gate_from_starting(
    broker: LocalBroker, tmp_path: Path
) -> None:
    gate = AgentProcess(tmp_path, broker)
    gate.write("")
    gate.data_dir.mkdir()
    (gate.data_dir / PUSHED_FILE).write_bytes(pushed_bytes({"decoder.repeat_window": 9999}))
    watcher = Watcher(broker, f"gatescan/v1/devices/{DEVICE}/#")
    gate.start()
    try:
        expected = gate.expected_hash({})
        wait_until(lambda: running_hash(watcher) == expected, 30, "the file's config running")
    finally:
        watcher.close()
        output = gate.stop()
    assert "the pushed settings do not fit the file, so the file's are used" in output
    assert "decoder.repeat_window: must be at most 600, got 9999" in output, output
