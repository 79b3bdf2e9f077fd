"""A gate with a bad config stays up in the config_error state (its light, the watchdog pinged,
its `config` fault in the retained status) and starts once the file is fixed, without a restart;
`gatescan config check` lists every problem at once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from device.indicator.pin_log import read_pin_log
from gatescan.testing.broker import LocalBroker
from gatescan.testing.samples import write_replay_folder
from tests.support.cli import run_gatescan
from tests.support.waiting import wait_until

BAD = '[camera]\ntype = "replay"\nfolder = "frames"\nfsp = 3\n[policy]\nmode = "logs"\n'
GOOD = '[camera]\ntype = "replay"\nfolder = "frames"\nfps = 3\n[policy]\nmode = "log"\n'
DEVICE = "gate-config-1"


class NotifySocket:
    """A stand-in for systemd's notify socket: what the gate tells it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def count(self, prefix: str) -> int:
        return sum(1 for message in list(self.messages) if message.startswith(prefix))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    listening = NotifySocket(tmp_path / "notify.sock")
    yield listening
    listening.close()


class StatusWatcher:
    def __init__(self, broker: LocalBroker) -> None:
        self.payloads: list[dict[str, object]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="status-watcher")
        self.client.on_message = lambda _c, _u, m: self.payloads.append(json.loads(m.payload))
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(f"gatescan/v1/devices/{DEVICE}/status", qos=1)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_bad_config_keeps_the_gate_up_until_the_file_is_fixed(
    broker: LocalBroker, notify: NotifySocket, tmp_path: Path
) -> None:
    config = tmp_path / "gate.toml"
    config.write_text(BAD)
    write_replay_folder(tmp_path / "frames", [None], frame_size=(320, 240))
    pins = tmp_path / "pins.log"
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": "2000000",
        "GATESCAN_FAULT_PIN_LOG": str(pins),
    }
    env.pop("WATCHDOG_PID", None)
    watcher = StatusWatcher(broker)
    log_path = tmp_path / "agent.log"
    with log_path.open("wb") as log:
        agent = subprocess.Popen(
            [sys.executable, "-m", "gatescan.cli", "agent", "--config", str(config),
             "--broker", broker.url, "--device-id", DEVICE, "--data-dir", str(tmp_path / "d")],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        wait_until(lambda: notify.count("READY=1") == 1, 20, "READY=1")
        wait_until(lambda: notify.count("WATCHDOG=1") >= 2, 20, "the watchdog pinged, twice")
        wait_until(lambda: any(p.get("faults") == ["config"] for p in watcher.payloads), 20,
                   "the config fault in the retained status")  # fmt: skip
        assert agent.poll() is None, "still up: no restart loop"
        text = log_path.read_text()
        assert "camera.fsp: unknown key; did you mean 'fps'?" in text
        assert "policy.mode" in text and "did you mean 'log'?" in text  # every problem at once
        red = [c for c in read_pin_log(pins) if c.pin == "GPIO27" and c.state]
        assert red, "the config error light (red)"
        config.write_text(GOOD)
        wait_until(lambda: f"online at {broker.url}" in log_path.read_text(), 20, "started")
        assert "config fixed: starting" in log_path.read_text()
    finally:
        agent.send_signal(signal.SIGTERM)
        code = agent.wait(timeout=30)
        watcher.close()
    assert code == 0, log_path.read_text()
    assert "Traceback" not in log_path.read_text()


def test_off_systemd_a_bad_config_exits_2_with_every_problem(tmp_path: Path) -> None:
    config = tmp_path / "gate.toml"
    config.write_text(BAD)
    (tmp_path / "frames").mkdir()
    result = run_gatescan(["agent", "--config", str(config), "--on-bad-config", "exit"], tmp_path)
    assert result.returncode == 2
    assert "camera.fsp" in result.stderr and "policy.mode" in result.stderr


def test_config_check_lists_every_problem_and_fails(tmp_path: Path) -> None:
    config = tmp_path / "gate.toml"
    config.write_text(BAD + '[mqtt]\nbroker = "mqtt:/x"\n')
    (tmp_path / "frames").mkdir()
    result = run_gatescan(["config", "check", str(config)], tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"{config}: 3 problems\n")
    assert "camera.fsp: unknown key; did you mean 'fps'?" in result.stderr
    assert "did you mean 'log'?" in result.stderr
    assert "mqtt.broker: 'mqtt:/x' is not a broker URL" in result.stderr


def test_config_check_passes_a_good_file_and_says_it_will_enrol(tmp_path: Path) -> None:
    config = tmp_path / "gate.toml"
    config.write_text(GOOD)
    (tmp_path / "frames").mkdir()
    result = run_gatescan(["config", "check", str(config)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{config}: ok\n")
    assert "setup mode" in result.stdout


@pytest.mark.parametrize(
    "example", ["docs/config-example.toml", "deploy/gate.example.yaml"], ids=["toml", "yaml"]
)
def test_config_check_passes_the_shipped_examples(example: str) -> None:
    root = Path(__file__).resolve().parents[3]
    result = run_gatescan(["config", "check", str(root / example)], root)
    assert result.returncode == 0, result.stderr
