"""A bare MQTT v5 client watching site policy topics, as a gate would: each topic's latest payload
(retained or live) and when it came; what the policy tests share."""

from __future__ import annotations

import ssl
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from protocol.site_policy import SitePolicy, decode_manifest, manifest_topic

TIMEOUT_S = 20.0


class PolicyWatch:
    def __init__(
        self,
        url: str,
        topics: list[str],
        *,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        client_id: str = "",
    ) -> None:
        self.latest: dict[str, bytes] = {}
        self.arrived: dict[str, float] = {}  # monotonic
        self.arrived_at: dict[str, datetime] = {}  # wall clock, UTC
        self.received: list[tuple[str, bytes]] = []
        self.granted: list[ReasonCode] = []
        self.answers: dict[int, ReasonCode] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._topics = topics
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_file is not None:
            self.client.tls_set_context(ssl.create_default_context(cafile=str(ca_file)))
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_publish = lambda _c, _u, mid, reason, _p: self.answers.__setitem__(
            mid, reason
        )
        rest = url.split("://", 1)[1]
        host, port = rest.rsplit(":", 1)
        self.client.connect(host, int(port))
        self.client.loop_start()
        if not self._subscribed.wait(TIMEOUT_S):
            raise AssertionError("the policy watcher was not subscribed")

    def _on_connect(self, client: mqtt.Client, *_args: object) -> None:
        client.subscribe([(topic, 1) for topic in self._topics])

    def _on_subscribe(self, _c: object, _u: object, _mid: int, reasons: list[ReasonCode],
                      _p: object) -> None:  # fmt: skip
        self.granted = list(reasons)
        self._subscribed.set()

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.latest[message.topic] = bytes(message.payload)
            self.arrived[message.topic] = time.monotonic()
            self.arrived_at[message.topic] = datetime.now(UTC)
            self.received.append((message.topic, bytes(message.payload)))

    def manifest(self, site_id: str) -> SitePolicy | None:
        payload = self.latest.get(manifest_topic(site_id))
        return None if not payload else decode_manifest(payload)

    def wait_manifest(self, site_id: str, above: int = 0, timeout: float = TIMEOUT_S) -> SitePolicy:
        """The site's manifest once its version is above `above`."""
        deadline = time.monotonic() + timeout
        while True:
            manifest = self.manifest(site_id)
            if manifest is not None and manifest.version > above:
                return manifest
            if time.monotonic() > deadline:
                raise AssertionError(f"no manifest of {site_id} above version {above}")
            time.sleep(0.01)  # the client's inbox to poll

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
