"""A gate in access mode on real parts: the site's policy published retained on a real Mosquitto
(as the server does, with a real Ed25519 site key), an agent (build_agent's wiring) reading QR
images through the replay camera and real decoders, its door relay on gpiozero MockFactory pins.

Passes and cards are granted or denied with the right reason, the relay pulses on granted only,
the status reports the policy version held, and a revocation published while the gate runs
reaches its decision within 2 s (the figure is printed: run with -s to see it)."""

from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device.system.health import Fault
from gatescan.testing.broker import LocalBroker
from gatescan.testing.samples import cccd_payload
from gatescan.testing.site_policies import SampleSite, pass_id_of
from protocol.topics import Topic, device_topic
from protocol.verdicts import Reason, VerdictStatus
from tests.support.gate_thread import RELAY_PIN, GateThread
from tests.support.gate_thread import running_gate as gate_thread
from tests.support.waiting import wait_until

SITE = "Bến xe Mỹ Đình"
DEVICE = "gate-policy-01"
ALLOWED = cccd_payload("079193012345", "Nguyễn Thị Thu Uyên", "05061993", "Nữ", "Huế", "21042021")
UNLISTED = cccd_payload("001090012345", "Trần Văn Đức", "01011990", "Nam", "Hà Nội", "15082021")


def running_gate(
    tmp_path: Path, broker: LocalBroker, frames: list[bytes | None], repeat_window: float
) -> AbstractContextManager[GateThread]:
    return gate_thread(
        tmp_path, broker_url=broker.url, device_id=DEVICE, site_id=SITE, frames=frames,
        repeat_window=repeat_window, fps=20,
    )  # fmt: skip


class Publisher:
    """The server's side of the policy topics: retained QoS 1 publishes, and a status watch."""

    def __init__(self, broker: LocalBroker) -> None:
        self.statuses: list[dict[str, object]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda _c, _u, msg: self.statuses.append(json.loads(msg.payload))
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(device_topic(DEVICE, Topic.STATUS), qos=1)
        self.client.loop_start()

    def publish(self, messages: list[tuple[str, bytes]]) -> None:
        infos = [self.client.publish(t, p, qos=1, retain=True) for t, p in messages]
        for info in infos:
            info.wait_for_publish(timeout=5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_access_mode_grants_and_denies_with_the_sites_published_policy(
    broker: LocalBroker, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    site = SampleSite(SITE)
    valid = site.issue(now=now)
    revoked = site.issue(now=now)
    tampered = bytearray(site.issue(now=now))
    tampered[30] ^= 0x40
    codes = {
        "valid pass": (valid, VerdictStatus.GRANTED, Reason.OK),
        "allow-listed card": (ALLOWED, VerdictStatus.GRANTED, Reason.OK),
        "expired pass": (
            site.issue(valid_from=now - timedelta(days=2), valid_until=now - timedelta(days=1)),
            VerdictStatus.DENIED,
            Reason.EXPIRED,
        ),
        "pass not yet valid": (
            site.issue(valid_from=now + timedelta(days=1), valid_until=now + timedelta(days=2)),
            VerdictStatus.DENIED,
            Reason.NOT_YET_VALID,
        ),
        "tampered pass": (bytes(tampered), VerdictStatus.DENIED, Reason.BAD_SIGNATURE),
        "another site's pass": (
            site.issue(now=now, key=Ed25519PrivateKey.generate()),
            VerdictStatus.DENIED,
            Reason.BAD_SIGNATURE,
        ),
        "revoked pass": (revoked, VerdictStatus.DENIED, Reason.REVOKED),
        "random QR": (b"https://quan-pho.vn/menu", VerdictStatus.DENIED, Reason.UNKNOWN_FORMAT),
        "unlisted card": (UNLISTED, VerdictStatus.DENIED, Reason.NOT_ALLOWED),
    }
    site.allow(ALLOWED[:12].decode())
    site.revoke(pass_id_of(revoked))
    frames: list[bytes | None] = []
    for code, _, _ in codes.values():
        frames += [code, None]
    publisher = Publisher(broker)
    publisher.publish(site.messages())
    try:
        with running_gate(tmp_path, broker, frames, repeat_window=1.0) as gate:
            wait_until(lambda: gate.agent.site_policy.read().version == site.version, 15, "policy")
            held_at = time.monotonic()
            gate.factory.pin(RELAY_PIN).clear_states()
            wait_until(lambda: Fault.POLICY not in gate.agent.health.faults, 5, "no policy fault")
            seen = {
                what: wait_until(partial(gate.first_after, held_at, code), 15, what)
                for what, (code, _, _) in codes.items()
            }
            wait_until(
                lambda: any(s.get("policy_version") == site.version for s in publisher.statuses),
                5,
                "the status's policy_version",
            )
            rises = gate.relay_rises(held_at)
            granted = [s.at for s in gate.seen(held_at) if s.status == "granted"]
    finally:
        publisher.close()

    got = {what: (scan.status, scan.reason) for what, scan in seen.items()}
    assert got == {what: (status, reason) for what, (_, status, reason) in codes.items()}
    # The relay pulsed for each granted scan, and only then (lit before the scan is reported).
    assert len(rises) == len(granted) >= 2
    assert all(any(0 <= at - rise < 0.5 for at in granted) for rise in rises)


def test_a_gate_without_a_policy_refuses_everyone_and_shows_the_policy_fault(
    broker: LocalBroker, tmp_path: Path
) -> None:
    valid = SampleSite(SITE).issue()  # a valid pass of a site whose policy never came
    with running_gate(tmp_path, broker, [valid, None, ALLOWED, None], 0.5) as gate:
        wait_until(lambda: gate.agent.health.online, 15, "online")
        assert Fault.POLICY in gate.agent.health.faults
        pass_scan = wait_until(lambda: gate.first_after(0, valid), 10, "a pass scanned")
        card_scan = wait_until(lambda: gate.first_after(0, ALLOWED), 10, "a card scanned")
        assert (pass_scan.status, pass_scan.reason) == ("denied", Reason.BAD_SIGNATURE)
        assert (card_scan.status, card_scan.reason) == ("denied", Reason.NOT_ALLOWED)
        assert gate.factory.pin(RELAY_PIN).states[-1].state is False
        assert all(not state.state for state in gate.factory.pin(RELAY_PIN).states)


def test_a_revocation_reaches_a_running_gate_within_two_seconds(
    broker: LocalBroker, tmp_path: Path
) -> None:
    site = SampleSite(SITE)
    valid = site.issue()
    publisher = Publisher(broker)
    publisher.publish(site.messages())
    try:
        with running_gate(tmp_path, broker, [valid, None], repeat_window=0.0) as gate:
            wait_until(lambda: gate.agent.site_policy.read().version == site.version, 15, "policy")
            held_at = time.monotonic()
            granted = wait_until(lambda: gate.first_after(held_at, valid), 5, "granted")
            assert granted.status == "granted"
            applied: list[tuple[float, int | None]] = []
            gate.agent.site_policy.watch(
                lambda now: applied.append((time.monotonic(), now.version))
            )
            touched = site.revoke(pass_id_of(valid))
            published = time.monotonic()
            publisher.publish(site.messages(only=touched))
            held = wait_until(
                lambda: next((at for at, version in applied if version == site.version), None),
                2,
                "the revocation held",
            )
            denied = wait_until(
                lambda: next(
                    (s for s in gate.scans if s.at > published and s.reason == "revoked"), None
                ),
                2.5,
                "the revoked pass denied",
            )
    finally:
        publisher.close()
    to_held, to_decision = held - published, denied.at - published
    print(
        f"\nrevocation over the broker: held by the gate {to_held * 1000:.0f} ms after the "
        f"publish, its first scan after it denied `revoked` {to_decision * 1000:.0f} ms after it "
        "(the pass is in view 0.15 s of every 0.3 s, read at up to 20 frames/s)"
    )
    assert denied.status == "denied"
    assert to_decision < 2.0


def test_a_gate_restarted_offline_still_refuses_a_second_entry_through_it(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """Hard anti-passback on a gate alone: its own passages come back from its journal when it
    starts, so a restart with no broker does not forget who came in."""
    site = SampleSite(SITE, anti_passback="hard")
    site.allow(ALLOWED[:12].decode())
    publisher = Publisher(broker)
    publisher.publish(site.messages())
    frames: list[bytes | None] = [ALLOWED, *[None] * 12]  # a new showing every ~2 s
    try:
        with running_gate(tmp_path, broker, frames, repeat_window=1.0) as gate:
            wait_until(
                lambda: [s for s in gate.seen(0.0) if s.status is VerdictStatus.GRANTED],
                15,
                "an entry",
            )
    finally:
        publisher.close()
    broker.stop()  # the network is gone; the gate starts again from its data dir
    with running_gate(tmp_path, broker, frames, repeat_window=1.0) as again:
        seen = wait_until(partial(again.first_after, 0.0, ALLOWED), 15, "a scan after restart")
        assert (seen.status, seen.reason) == (VerdictStatus.DENIED, Reason.ALREADY_INSIDE)
        assert not again.agent.health.online
