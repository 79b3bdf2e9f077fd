"""Alerts from a running `gatescan server` (build_server with the collector, real Mosquitto): a
gate that goes offline reaches a real HTTP receiver (signed) and a real SMTP server (STARTTLS)
within seconds, once, and the message that it cleared follows when it is back."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gatescan.testing.broker import LocalBroker, free_port
from protocol.messages import Status
from protocol.topics import Topic, device_topic
from server.app import AlertOptions, CollectorLogin, Listen, ServerOptions, build_server
from server.dashboard.settings import WebSettings
from tests.support.alert_receivers import Inbox, Receiver, running_smtp
from tests.support.waiting import wait_until

GATE = "gate-cong-chinh"


def publish_status(broker: LocalBroker, state: str) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{GATE}-{state}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    status = Status.model_validate(
        {"state": state, "ts": datetime.now(UTC).isoformat(), "site_id": "hq"}
    )
    client.publish(device_topic(GATE, Topic.STATUS), status.to_json(), qos=1, retain=True)
    client.loop_stop()
    client.disconnect()


@pytest.fixture
def broker() -> Iterator[LocalBroker]:
    with LocalBroker() as running:
        yield running


def test_a_gate_going_down_reaches_people_once_and_its_return_too(
    tmp_path: Path,
    broker: LocalBroker,
    receiver: Receiver,
    mail_tls: tuple[object, Path],
) -> None:
    inbox = Inbox()
    smtp = running_smtp(inbox, mail_tls[0])  # type: ignore[arg-type]
    (tmp_path / "hook.secret").write_text("a shared secret of 32 bytes, ok\n")
    (tmp_path / "alerts.toml").write_text(
        f"""every = 1
clear_after = 1
[rules]
offline_min = 0.02
[[webhook]]
url = "{receiver.url}"
secret_file = "hook.secret"
[[mail]]
host = "127.0.0.1"
port = {smtp.port}
sender = "gatescan@example.vn"
to = ["quanly@example.vn"]
ca_file = "{mail_tls[1]}"
""",
        encoding="utf-8",
    )
    server = build_server(
        ServerOptions(
            db_url=f"sqlite:///{tmp_path / 'server.db'}",
            collector=CollectorLogin(broker.url, client_id="alerts-collector"),
            dashboard=WebSettings(offline_after_s=30),  # the retained "offline" says it at once
            listen=Listen("127.0.0.1", free_port()),
            alerts=AlertOptions(tmp_path / "alerts.toml"),
        )
    )
    stop = threading.Event()
    runner = threading.Thread(target=server.run, args=(stop,))
    runner.start()
    try:
        publish_status(broker, "online")
        time.sleep(1.5)
        went_down = time.monotonic()
        publish_status(broker, "offline")

        def told(event: str) -> list[dict[str, str]]:
            return [
                change
                for _, body in receiver.got
                for change in json.loads(body)["changes"]
                if change["event"] == event and change["key"] == f"offline:{GATE}"
            ]

        wait_until(lambda: told("opened"), 20, "the webhook told of the gate offline")
        print(f"\ngate offline -> webhook: {time.monotonic() - went_down:.1f} s")
        wait_until(lambda: inbox.messages, 20, "the e-mail")
        publish_status(broker, "online")
        wait_until(lambda: told("cleared"), 20, "the webhook told it is back")
        time.sleep(2.5)  # a few more looks: nothing more to say
        assert len(told("opened")) == 1 and len(told("cleared")) == 1
    finally:
        stop.set()
        runner.join(timeout=30)
        smtp.stop()
    body = inbox.messages[0].get_payload(decode=True).decode("utf-8")  # type: ignore[union-attr]
    assert f"cổng {GATE} mất kết nối" in body


def test_a_bad_alerts_file_is_a_clear_error_at_start(tmp_path: Path) -> None:
    from firmware_config.errors import ConfigError

    (tmp_path / "alerts.toml").write_text('every = 30\n[[webhook]]\nurll = "x"\n')
    with pytest.raises(ConfigError, match="urll"):
        build_server(
            ServerOptions(
                db_url=f"sqlite:///{tmp_path / 'server.db'}",
                dashboard=None,
                alerts=AlertOptions(tmp_path / "alerts.toml"),
            )
        )
