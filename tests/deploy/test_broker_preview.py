"""The preview on the site's own broker (its generated config and ACL, TLS, dynamic security):
a gate's frames reach the collector's relay while the server's session lives; another gate can
neither send frames as that gate, nor read them, nor ask for them; an enrolled gate's role
(dynamic security) carries the preview as the ACL file does; and no frame is stored."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from device.journal.journal import Journal
from device.preview.remote import RemotePreview
from device.preview.tap import PreviewTap
from device.uplink.link import Uplink
from gatescan.testing.samples import write_replay_folder
from protocol.broker_tls import BrokerTls, client_tls_context
from protocol.preview.wire import (
    FrameHeader,
    PreviewRequest,
    pack_frame,
    preview_request_topic,
    preview_topic,
)
from server.app import preview_relay
from server.broker_admin.dynsec import BrokerAdmin
from server.dashboard.preview.relay import PreviewRelay
from server.site.installation import Installation
from server.store.database import Store
from tests.support import waiting
from tests.support.tls_site import (
    SiteBroker,
    admin_login,
    new_site,
    site_broker,
    site_collector,
    site_folder,
)

GATE, GATE_PASSWORD = "gate-a", "a-secret-for-preview"
OTHER, OTHER_PASSWORD = "gate-b", "b-secret-for-preview"
ENROLLED, ENROLLED_PASSWORD = "gate-enrolled", "an-enrolled-secret"
TIMEOUT = 10.0
NOT_AUTHORIZED = 0x87


@pytest.fixture
def site() -> Iterator[Installation]:
    with site_folder() as folder:
        yield new_site(folder, gates={GATE: GATE_PASSWORD, OTHER: OTHER_PASSWORD})


@pytest.fixture
def broker(site: Installation) -> Iterator[SiteBroker]:
    with site_broker(site) as running:
        yield running


def qr_frame(folder: Path) -> Any:
    import cv2

    write_replay_folder(folder, [b"GATESCAN-PREVIEW-ACL-0001"], frame_size=(1280, 720))
    [path] = sorted(folder.glob("*.png"))
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


class PreviewGate:
    """A gate's uplink and preview tap, its camera a frame offered 20 times a second."""

    def __init__(self, site: Installation, device_id: str, password: str, tmp: Path) -> None:
        self.tap = PreviewTap(region=(0.2, 0.1, 0.6, 0.8))
        self.journal = Journal(tmp / device_id)
        uplinks: list[Uplink] = []
        remote = RemotePreview(
            self.tap,
            publish=lambda payload: uplinks[0].publish_preview(payload),
            now=lambda: datetime.now(UTC),
        )
        self.uplink = Uplink(
            device_id=device_id, broker_url=site.broker_url, journal=self.journal,
            version="test", boot_id="boot-1", username=device_id, password=password,
            tls=BrokerTls(ca_file=site.files.ca_file), on_preview_request=remote.handle,
        )  # fmt: skip
        uplinks.append(self.uplink)
        self.frame = qr_frame(tmp / f"{device_id}-frames")
        self._stop = threading.Event()
        self._camera = threading.Thread(target=self._offer, daemon=True)

    def _offer(self) -> None:
        while not self._stop.is_set():
            self.tap.offer(self.frame, 1)
            time.sleep(0.05)

    def start(self) -> PreviewGate:
        self.uplink.start()
        self._camera.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self.tap.close()
        self.uplink.stop()
        self.journal.close()


class Intruder:
    """Another gate's credentials, used by hand: publishes at QoS 1 and records each PUBACK's
    reason; records what it receives."""

    def __init__(self, site: Installation) -> None:
        self.pubacks: dict[int, int] = {}
        self.received: list[str] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=OTHER, protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.username_pw_set(OTHER, OTHER_PASSWORD)
        self.client.tls_set_context(client_tls_context(BrokerTls(ca_file=site.files.ca_file)))
        self.client.on_publish = self._on_publish
        self.client.on_message = lambda _c, _u, message: self.received.append(message.topic)
        host, port = site.broker_url.removeprefix("mqtts://").rsplit(":", 1)
        self.client.connect(host, int(port))
        self.client.loop_start()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        self.pubacks[mid] = reason.value

    def publish(self, topic: str, payload: bytes) -> int:
        info = self.client.publish(topic, payload, qos=1)
        waiting.wait_until(lambda: info.mid in self.pubacks, TIMEOUT, f"PUBACK on {topic}")
        return self.pubacks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def forged(session_id: str, seq: int) -> bytes:
    header = FrameHeader(
        session_id=session_id, seq=seq, ts=datetime.now(UTC), focus=9999.0, peak=9999.0,
        width=2, height=2, roi=(0, 0, 2, 2), codes=0, quality=80,
    )  # fmt: skip
    return pack_frame(header, b"\xff\xd8forged\xff\xd9")


def session_of(relay: PreviewRelay, device_id: str) -> str:
    held = relay.latest(device_id)
    assert held is not None
    return held.header.session_id


def test_only_the_gate_sends_its_preview_and_only_the_server_reads_it(
    site: Installation, broker: SiteBroker, tmp_path: Path
) -> None:
    with BrokerAdmin(admin_login(site)) as broker_admin:
        broker_admin.ensure_gate(ENROLLED, "hq", ENROLLED_PASSWORD)
    db = tmp_path / "collector.db"
    gates: list[PreviewGate] = []
    received: list[bytes] = []
    with Store(db) as store:
        collector = site_collector(site, store)
        relay = preview_relay(collector)
        sink = relay.frame_arrived

        def keep(device_id: str, payload: bytes) -> bool:
            received.append(payload)
            return sink(device_id, payload)

        collector.set_preview_sink(keep)
        collector.start()
        intruder = None
        try:
            assert collector.wait_until_subscribed(TIMEOUT), broker.log()
            for device_id, password in ((GATE, GATE_PASSWORD), (ENROLLED, ENROLLED_PASSWORD)):
                gates.append(PreviewGate(site, device_id, password, tmp_path).start())
            waiting.wait_until(lambda: all(g.uplink.connected for g in gates), TIMEOUT, "online")
            time.sleep(0.3)  # the SUBSCRIBE sent on connect, answered
            assert not any(g.tap.active for g in gates)  # nothing until the server asks
            for device_id in (GATE, ENROLLED):
                assert relay.start(device_id, "alice") == (None, True)
            started = time.monotonic()
            waiting.wait_until(
                lambda: all(relay.latest(d) is not None for d in (GATE, ENROLLED)),
                TIMEOUT,
                "a frame of each gate at the relay",
            )
            latency = time.monotonic() - started
            held = relay.latest(GATE)
            assert held is not None and held.jpeg.startswith(b"\xff\xd8")
            assert held.header.focus > 0 and held.header.codes == 1
            print(f"\nfirst frame {latency:.2f} s after the start; {len(held.jpeg)} bytes")

            intruder = Intruder(site)
            session = session_of(relay, GATE)
            # gate-b sends frames as gate-a (the live session named), and asks gate-a itself:
            assert intruder.publish(preview_topic(GATE), forged(session, 10**9)) == NOT_AUTHORIZED
            stale = PreviewRequest(
                session_id="intruder-01", action="start", issued_at=datetime.now(UTC)
            ).to_json()
            assert intruder.publish(preview_request_topic(GATE), stale) == NOT_AUTHORIZED
            # ... and tries to read gate-a's frames (Mosquitto grants the SUBSCRIBE, then
            # delivers nothing it may not read):
            intruder.client.subscribe(preview_topic(GATE), qos=0)
            intruder.client.subscribe(preview_topic(ENROLLED), qos=0)
            time.sleep(1.5)  # frames flow at 2 a second meanwhile
            assert intruder.received == []
            assert all(not p.endswith(b"forged\xff\xd9") for p in received)
            latest = relay.latest(GATE)
            assert latest is not None and latest.header.seq < 10**9
            # gate-b's own topic is its own: a frame there names no session of its own.
            assert intruder.publish(preview_topic(OTHER), forged(session, 1)) == 0
            time.sleep(0.3)
            assert relay.latest(OTHER) is None

            for device_id in (GATE, ENROLLED):
                assert relay.stop(device_id, "alice") is None
            waiting.wait_until(
                lambda: not any(g.tap.active for g in gates), TIMEOUT, "the gates to stop"
            )
        finally:
            if intruder is not None:
                intruder.close()
            for gate in gates:
                gate.close()
            collector.stop()
    assert len(received) >= 2
    # Never stored: no frame's bytes in the database or beside it, no image file anywhere.
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("collector.db*"))
    jpegs = [p[p.index(b"\xff\xd8") :] for p in received if not p.endswith(b"forged\xff\xd9")]
    assert jpegs and all(len(jpeg) > 1000 for jpeg in jpegs)
    for jpeg in jpegs:
        assert jpeg[500:564] not in stored
    assert not [p for p in tmp_path.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg")]
