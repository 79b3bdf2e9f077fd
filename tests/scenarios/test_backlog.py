"""Scenario 5: a backlog larger than the broker's per-client queue.

The collector subscribes once (a persistent MQTT session), then goes down while the gate scans
3,000 codes. Mosquitto queues QoS 1 messages for the absent collector up to max_queued_messages
(left at its default, 1000) and drops the rest: a PUBACK from the broker is no proof of storage.
Nothing may be lost all the same, because an event leaves the gate's outbox only when the
collector's ack names it, and is resent until then. The test proves the queue really overflowed
(the broker's log and its $SYS drop counter), then brings the collector back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gatescan.testing.broker import LocalBroker
from tests.support.fault_site import (
    Figures,
    GateSettings,
    Site,
    code_hash,
    distinct_cards,
    last_received_at,
    tally,
    write_frames,
)
from tests.support.waiting import wait_until

CODES = 3000
COLLECTOR_ID = "fault-collector"
DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"
DROPPING_LINE = f"Outgoing messages are being dropped for client {COLLECTOR_ID}"


class DropCounter:
    """Mosquitto's count of messages it dropped for a full queue, as its $SYS topic says."""

    def __init__(self, broker: LocalBroker) -> None:
        self._dropped = 0
        self._lock = threading.Lock()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._client.on_message = self._on_message
        self._client.connect(broker.host, broker.port)
        self._client.subscribe(DROPPED_TOPIC)
        self._client.loop_start()

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._dropped

    def _on_message(self, _client: object, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._dropped = int(msg.payload)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


@pytest.fixture
def busy_site(tmp_path: Path) -> Iterator[Site]:
    """A site whose broker publishes its $SYS counters every second (default: every 10 s);
    max_queued_messages is not set, so it is Mosquitto's default of 1000."""
    with LocalBroker(workdir=tmp_path / "broker", extra_config="sys_interval 1\n") as broker:
        assert "max_queued" not in broker.workdir.joinpath("mosquitto.conf").read_text()
        site = Site(tmp_path, broker)
        yield site
        site.close()


@pytest.mark.slow
def test_backlog_of_3000_beyond_the_brokers_queue_of_1000_is_delivered_whole(
    busy_site: Site, record_figures: Callable[[Figures], None]
) -> None:
    site = busy_site
    codes = distinct_cards(CODES)
    replay = write_frames(site.root / "replay", codes)
    drops = DropCounter(site.broker)
    collector = site.start_collector(COLLECTOR_ID)  # subscribed: the broker keeps its session
    assert collector.stop() == 0

    started = time.monotonic()
    # One frame per code at 100 fps; resend every 2 s so the queue fills within the scan.
    agent = site.start_agent(GateSettings(replay=replay, fps=100, hold=0.01, resend_after=2))
    wait_until(lambda: len(site.journal_now().history) >= CODES, 300, "3000 codes journaled", 1)
    scan_s = time.monotonic() - started
    wait_until(lambda: DROPPING_LINE in site.broker.log_text(), 60, "the broker to drop")
    wait_until(lambda: drops.dropped > 0, 10, "the broker's drop counter")
    dropped_while_down = drops.dropped
    assert site.stored_count() == 0

    collector_back = time.time()
    collector = site.start_collector(COLLECTOR_ID)
    collector.wait_for_log("session present: True", timeout=10)  # the queue it was kept
    site.wait_until_delivered(CODES, timeout=300)
    assert agent.stop() == 0, agent.log_text()[-3000:]
    drops.close()

    journal = site.journal()
    stored = site.stored()
    counts = tally(journal.history, stored)
    assert {event.code_sha256 for event in journal.history} == {code_hash(c) for c in codes}
    assert (counts.shown, counts.stored, counts.duplicates, counts.lost) == (CODES, CODES, 0, 0)
    assert counts.invented == 0 and journal.outbox == []
    record_figures(
        Figures(
            scenario="5",
            title="3,000 events while the collector is down (broker queue 1,000)",
            tally=counts,
            recover_s=last_received_at(stored) - collector_back,
            notes=(
                f"broker dropped {dropped_while_down} queued messages for the collector; "
                f"3000 codes scanned and journaled in {scan_s:.0f} s; "
                "recover: from the collector's restart"
            ),
        )
    )
