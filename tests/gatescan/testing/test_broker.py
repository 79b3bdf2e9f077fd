"""LocalBroker keeps Mosquitto's log where a failing test can read it, as root too."""

import os
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gatescan.testing.broker import BrokerFailedToStart, LocalBroker


def connect_once(broker: LocalBroker, client_id: str) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        deadline = time.monotonic() + 5
        while not client.is_connected():
            assert time.monotonic() < deadline, "the client never connected"
            time.sleep(0.01)
    finally:
        client.disconnect()
        client.loop_stop()


def wait_for_log(broker: LocalBroker, text: str, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    while text not in broker.log_text():
        assert time.monotonic() < deadline, f"{text!r} never logged; log:\n{broker.log_text()}"
        time.sleep(0.01)
    return broker.log_text()


def test_the_log_names_each_client_that_connected(tmp_path: Path) -> None:
    private = tmp_path / "broker"
    private.mkdir(mode=0o700)
    client_id = f"probe-{uuid.uuid4().hex[:8]}"
    with LocalBroker(workdir=private) as broker:
        connect_once(broker, client_id)

        wait_for_log(broker, f"as {client_id}")
    print("euid", os.geteuid(), "\n" + broker.log_text())


def test_a_restart_appends_to_the_log(tmp_path: Path) -> None:
    with LocalBroker(workdir=tmp_path / "broker") as broker:
        connect_once(broker, "before-restart")
        wait_for_log(broker, "as before-restart")
        broker.restart()
        connect_once(broker, "after-restart")

        log = wait_for_log(broker, "as after-restart")

    assert "as before-restart" in log


def test_a_bad_config_line_fails_the_start_at_once_with_the_log(tmp_path: Path) -> None:
    broker = LocalBroker(workdir=tmp_path / "broker", extra_config="no_such_option 1\n")
    started = time.monotonic()

    with pytest.raises(BrokerFailedToStart, match="mosquitto exited with code") as caught:
        broker.start()

    assert time.monotonic() - started < 5  # not the whole startup timeout
    assert "no_such_option" in str(caught.value)
    assert "no_such_option" in broker.log_text()


def test_log_text_is_empty_before_the_first_start(tmp_path: Path) -> None:
    assert LocalBroker(workdir=tmp_path / "broker").log_text() == ""
