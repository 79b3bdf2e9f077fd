"""What /metrics shows, made at scrape time by one prometheus_client Collector per web app.

Nothing is kept between scrapes but the registry itself (made once, with the app): the
counters are the collector's own (`CollectorCounters`, when a collector runs in this process)
and the web app's failed logins; everything else is read from the database on each scrape, by
a few small queries whose size is the fleet's, not the entries':

- the gates (`fleet_status`: the devices table, and today's entries counted per gate by the
  `ts` index), each with its latest telemetry (its machine too: Wi-Fi, disk, temperature),
  labelled by device id and site;
- the dead letters kept, by reason (a GROUP BY over a table the retention purge keeps small);
- each site's policy version (`policy_versions`, the publisher's own poll).

Label values are the gates' and sites' own text: the library escapes them in the exposition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from server.clock import Clock, utc_now
from server.collector.prepare import CollectorCounters
from server.dashboard.reports.fleet import GateStatus, fleet_status
from server.store.database import Store
from server.store.site_policy import policy_versions

GATE_LABELS = ["device_id", "site"]


@dataclass(frozen=True)
class Ingest:
    """A collector running in the same process as the web app (`gatescan server`): its
    counters, which the writer thread moves and a scrape reads."""

    counters: CollectorCounters


@dataclass(frozen=True)
class MetricSources:
    """Where a scrape reads from. `counters`: the collector's, None when this process runs no
    collector (`gatescan web`): the ingest metrics are then left out, not shown as zero.
    `failed_logins`: the web app's count of failed logins by why."""

    store: Store
    offline_after_s: float
    tz: ZoneInfo
    ingest: Ingest | None = None
    failed_logins: Callable[[], Mapping[str, int]] | None = None
    clock: Clock = utc_now


class GatescanMetrics(Collector):
    """The gatescan_* metrics, made anew on each `collect` (each scrape)."""

    def __init__(self, sources: MetricSources) -> None:
        self._sources = sources

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration: the names are all ours

    def collect(self) -> Iterator[Metric]:
        sources = self._sources
        if sources.ingest is not None:
            yield from ingest_metrics(sources.ingest.counters)
        if sources.failed_logins is not None:
            failed = CounterMetricFamily(
                "gatescan_logins_failed",
                "Failed dashboard logins since this process started, by why.",
                labels=["why"],
            )
            for why, count in sorted(sources.failed_logins().items()):
                failed.add_metric([why], count)
            yield failed
        gates = fleet_status(sources.store, sources.clock(), sources.offline_after_s, sources.tz)
        yield from gate_metrics([gate for gate in gates if gate.registration != "retired"])
        yield from store_metrics(sources.store)


def ingest_metrics(counters: CollectorCounters) -> Iterator[Metric]:
    """The collector's counters since it started (reads of ints and copies of small dicts: the
    writer thread may count on meanwhile)."""
    simple = (
        ("gatescan_events_received", "Events messages received.", counters.received),
        ("gatescan_events_stored", "Events newly committed.", counters.stored),
        ("gatescan_events_duplicate", "Events already stored (resends), acked again.",
         counters.duplicates),
        ("gatescan_events_conflict", "Event ids stored before with other content.",
         counters.conflicts),
        ("gatescan_events_erased", "Events naming an erased person: acked, not stored.",
         counters.erased),
        ("gatescan_events_rejected", "Refused events named back to their gate.",
         counters.rejected),
        ("gatescan_acks_sent", "Ack messages published to gates.", counters.acks_sent),
        ("gatescan_collector_errors", "Batches that could not be handled (nothing acked).",
         counters.errors),
        ("gatescan_messages_rate_limited", "Messages over their gate's limits, dropped unread.",
         counters.rate_limited),
    )  # fmt: skip
    for name, documentation, value in simple:
        yield CounterMetricFamily(name, documentation, value=value)
    refused = CounterMetricFamily(
        "gatescan_messages_refused",
        "Messages of any kind refused and dead-lettered, by reason.",
        labels=["reason"],
    )
    for reason, count in sorted(dict(counters.dead_letter_reasons).items()):
        refused.add_metric([reason], count)
    yield refused
    latency = counters.commit_latency
    total_s = latency.total_s
    buckets = [(_le(bound), float(count)) for bound, count in latency.cumulative()]
    yield HistogramMetricFamily(
        "gatescan_ingest_batch_seconds",
        "Time to write and commit one batch of messages (one transaction).",
        buckets=buckets,
        sum_value=total_s,
    )


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def gate_metrics(gates: list[GateStatus]) -> Iterator[Metric]:
    """The fleet, counted per site, and each gate's latest telemetry (a gate offline keeps
    showing what it last said: join with gatescan_gate_online)."""
    counts = GaugeMetricFamily(
        "gatescan_gates",
        "Gates heard (retired ones left out) by site and state: online or offline.",
        labels=["site", "state"],
    )
    faulty = GaugeMetricFamily(
        "gatescan_gates_in_fault", "Gates reporting a fault, by site.", labels=["site"]
    )
    per_site: dict[str, dict[str, int]] = {}
    for gate in gates:
        site = per_site.setdefault(gate.site_id, {"online": 0, "offline": 0, "fault": 0})
        site["online" if gate.online else "offline"] += 1
        site["fault"] += bool(gate.faults)
    for site_id, site in sorted(per_site.items()):
        counts.add_metric([site_id, "online"], site["online"])
        counts.add_metric([site_id, "offline"], site["offline"])
        faulty.add_metric([site_id], site["fault"])
    yield counts
    yield faulty
    families = {
        "online": GaugeMetricFamily(
            "gatescan_gate_online", "1 if the gate is online, else 0.", labels=GATE_LABELS
        ),
        "outbox": GaugeMetricFamily(
            "gatescan_gate_outbox_depth",
            "Events waiting on the gate for the collector's ack (latest telemetry).",
            labels=GATE_LABELS,
        ),
        "fps": GaugeMetricFamily(
            "gatescan_gate_decode_fps",
            "Frames decoded per second (latest telemetry).",
            labels=GATE_LABELS,
        ),
        "decode_ms": GaugeMetricFamily(
            "gatescan_gate_decode_milliseconds",
            "Median decode time over the last interval (latest telemetry).",
            labels=GATE_LABELS,
        ),
        "frames_dropped": GaugeMetricFamily(
            "gatescan_gate_frames_dropped",
            "Frames never decoded over the last interval: the decoder is slower than the camera.",
            labels=GATE_LABELS,
        ),
        "read_ratio": GaugeMetricFamily(
            "gatescan_gate_read_ratio",
            "Frames where a code was read against frames where one was likely, over the last"
            " interval (0 to 1); no sample from a gate that cannot tell or saw no code.",
            labels=GATE_LABELS,
        ),
        "wifi": GaugeMetricFamily(
            "gatescan_gate_wifi_signal_dbm",
            "The gate's Wi-Fi signal in dBm (latest telemetry; none without Wi-Fi).",
            labels=GATE_LABELS,
        ),
        "disk_free": GaugeMetricFamily(
            "gatescan_gate_disk_free_bytes",
            "Free space on the gate's data disk (latest telemetry).",
            labels=GATE_LABELS,
        ),
        "disk_total": GaugeMetricFamily(
            "gatescan_gate_disk_total_bytes",
            "Size of the gate's data disk (latest telemetry).",
            labels=GATE_LABELS,
        ),
        "cpu_temp": GaugeMetricFamily(
            "gatescan_gate_cpu_temperature_celsius",
            "The gate's CPU temperature (latest telemetry).",
            labels=GATE_LABELS,
        ),
        "scans_today": GaugeMetricFamily(
            "gatescan_gate_scans_today",
            "Entries stored since local midnight (the site's time zone).",
            labels=GATE_LABELS,
        ),
    }
    for gate in gates:
        labels = [gate.device_id, gate.site_id]
        families["online"].add_metric(labels, 1.0 if gate.online else 0.0)
        families["scans_today"].add_metric(labels, gate.scans_today)
        for key, value in (
            ("outbox", gate.outbox),
            ("fps", gate.fps),
            ("decode_ms", gate.decode_ms),
            ("frames_dropped", gate.frames_dropped),
            ("read_ratio", gate.read_ratio),
            ("wifi", gate.system.wifi_signal_dbm),
            ("disk_free", gate.system.disk_free_bytes),
            ("disk_total", gate.system.disk_total_bytes),
            ("cpu_temp", gate.system.cpu_temp_c),
        ):
            if value is not None:  # no telemetry yet: no sample, rather than a false zero
                families[key].add_metric(labels, value)
    yield from families.values()


def store_metrics(store: Store) -> Iterator[Metric]:
    kept = GaugeMetricFamily(
        "gatescan_dead_letters",
        "Messages refused and kept as dead letters (repeats included), by reason; the "
        "retention purge removes old ones.",
        labels=["reason"],
    )
    for reason, count in store.dead_letter_counts().items():
        kept.add_metric([reason], count)
    yield kept
    versions = GaugeMetricFamily(
        "gatescan_site_policy_version",
        "Each site's policy version (grows with every change of keys, revocations or lists).",
        labels=["site"],
    )
    for site, version in sorted(policy_versions(store.engine).items()):
        versions.add_metric([site], version)
    yield versions
