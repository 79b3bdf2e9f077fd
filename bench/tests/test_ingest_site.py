"""The ingest benchmark's site: each baseline counts every event it is sent, and a collector
swapped for the other client on the same session loses nothing."""

from __future__ import annotations

from pathlib import Path

from bench.client_bench import ClientRun, label
from bench.ingest_gates import BARE, BARE_TUNED, COLLECTOR, DONE, PACED
from bench.ingest_site import Segment, Site, broker_drops, site_broker_config
from gatescan.testing.broker import LocalBroker


def test_both_baselines_count_every_event_and_a_swapped_collector_acks_all(
    tmp_path: Path,
) -> None:
    with LocalBroker(workdir=tmp_path / "broker", extra_config=site_broker_config()) as broker:
        site = Site(broker, 20, 10, tmp_path, mqtt_client="stock")
        try:
            counted = {
                mode: site.segment(mode, str(mode), 1.5, 0.5).settled for mode in (BARE, BARE_TUNED)
            }
            stock = site.segment(COLLECTOR, "stock", 1.5, 0.5).settled
            site.swap_collector("tuned")
            tuned = site.segment(COLLECTOR, "tuned", 1.5, 0.5).settled
            paced = site.segment(PACED, "paced", 1.5, 0.5, rate=2000.0).settled
            site.drain()  # raises unless every event due or sent is acked in time
        finally:
            site.shared.mode.value = DONE
            results, stored, _ = site.finish()
        drops = broker_drops(broker)
    assert min(counted.values()) > 0 and min(stock, tuned, paced) > 0
    assert sum(r.unsettled_bare for r in results) == 0
    assert sum(r.unsettled_collector for r in results) == 0
    assert stored == sum(r.published_collector for r in results)
    assert "on the tuned MQTT client" in site.collector.log_text()
    assert drops == 0


def test_cpu_per_event_and_latencies_come_from_the_segments_of_one_label() -> None:
    segments = [
        Segment(3, label("stock", 10), 0.0, 2.0, 1000, {"collector": 50.0}),
        Segment(3, label("tuned", 10), 2.0, 4.0, 1000, {"collector": 25.0}),
    ]
    run = ClientRun(segments, [], stored=2000, broker_drops=0, drained_s={})
    assert run.cpu_us_per_event(label("stock", 10)) == 1000.0  # 1 s of CPU over 1,000 events
    assert run.cpu_us_per_event(label("tuned", 10)) == 500.0
    assert run.acked_rate(label("tuned", 10)) == 500.0
