"""paho's MQTT client as it comes, with the three calls the collector makes beyond it, through
paho's public API only: the baseline `IngestClient` (server/collector/client.py) is measured
against, and the collector's client when started with `--mqtt-client stock`.

- `ack_many`: one `ack()` per message (paho queues and wakes its network thread for each);
- `publish_qos0`: `publish(topic, payload, qos=0)`;
- `one_wakeup`: nothing to gather (paho wakes its network thread per packet anyway).

Its TCP socket goes without Nagle's algorithm as `IngestClient`'s does (a public callback,
`on_socket_open`), so what the two clients are compared on is paho's read and write paths only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from protocol.transport import send_at_once


class StockClient(mqtt.Client):
    """A paho Client offering `ack_many`, `publish_qos0` and `one_wakeup` on its public API."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_socket_open = _send_at_once

    def ack_many(self, mids: Sequence[int]) -> MQTTErrorCode:
        """PUBACK these QoS 1 messages (manual_ack=True), one `ack()` each, in the order given."""
        for mid in mids:
            rc = self.ack(mid, 1)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def publish_qos0(self, topic: bytes, payload: bytes) -> MQTTErrorCode:
        """Publish at QoS 0, not retained; MQTT_ERR_NO_CONN when not connected."""
        return self.publish(topic.decode(), payload, qos=0).rc

    @contextmanager
    def one_wakeup(self) -> Iterator[None]:
        """Nothing to gather: paho wakes its network thread for every packet queued."""
        yield


def _send_at_once(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    send_at_once(sock)
