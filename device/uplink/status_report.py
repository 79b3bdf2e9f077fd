"""The retained status of a gate that cannot run yet (its config is bad): `online` with its faults
while connected, `offline` as its last will and when it stops. No events, no acks: only what the
dashboard needs to show the gate and why it does nothing."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from device.uplink.link import RECONNECT_MAX_DELAY_S, RECONNECT_MIN_DELAY_S, Placement
from protocol.broker_tls import BrokerTls, client_tls_context
from protocol.broker_url import parse_broker_url
from protocol.messages import Status
from protocol.topics import Topic, device_topic

log = logging.getLogger("gatescan.uplink")


class StatusReport:
    def __init__(
        self,
        *,
        device_id: str,
        broker_url: str,
        faults: Sequence[str],
        version: str,
        boot_id: str,
        username: str | None = None,
        password: str | None = None,
        tls: BrokerTls | None = None,
        placement: Placement | None = None,
        keepalive: int = 15,
    ) -> None:
        self._address = parse_broker_url(broker_url)
        self._topic = device_topic(device_id, Topic.STATUS)
        fields = (placement or Placement()).status_fields()
        self._online = Status(
            state="online", version=version, boot_id=boot_id, faults=list(faults), **fields
        ).to_json()
        self._offline = Status(
            state="offline", version=version, boot_id=boot_id, faults=list(faults), **fields
        ).to_json()
        self._keepalive = keepalive
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"gatescan-{device_id}", protocol=mqtt.MQTTv5
        )
        if username is not None:
            client.username_pw_set(username, password)
        if self._address.tls:
            client.tls_set_context(client_tls_context(tls or BrokerTls()))
        client.will_set(self._topic, self._offline, qos=1, retain=True)
        client.reconnect_delay_set(RECONNECT_MIN_DELAY_S, RECONNECT_MAX_DELAY_S)
        client.on_connect = self._on_connect
        self._client = client
        self._started = False

    def start(self) -> None:
        self._client.connect_async(
            self._address.host, self._address.port, keepalive=self._keepalive, clean_start=True
        )
        self._client.loop_start()
        self._started = True

    def stop(self, timeout: float = 3.0) -> None:
        if not self._started:
            return
        if self._client.is_connected():
            info = self._client.publish(self._topic, self._offline, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=timeout)
            except (RuntimeError, ValueError) as exc:
                log.warning("could not publish the offline status: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: ReasonCode, *_: object
    ) -> None:
        if reason.is_failure:
            log.warning("broker refused the status report: %s", reason)
            return
        client.publish(self._topic, self._online, qos=1, retain=True)
        log.info("status published: the gate waits for a fixed config")
