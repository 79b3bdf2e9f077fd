"""What the collector's tuned MQTT client buys over stock paho at the loads a site gives it.

    python -m bench.client_bench [--quick] [--gates 2000] [--rates 1000,10000] [--segment 10]

`IngestClient` (server/collector/client.py) leans on paho's private internals to read and
acknowledge faster. Whether that coupling is worth keeping depends on what it buys where a site
is, not at saturation: a province-scale site is about 2,000 gates at one scan every 2 s (1,000
events/s), and ten times that rate from the same gates is the busiest a site gets (a backlog
flushed after an outage, or a stadium's gates at once).

One real Mosquitto (the site's settings, bench/ingest_site.py), 2,000 simulated gates (the
ingest benchmark's, each keeping up to 100 events in flight as a gate's uplink does), and the
real `gatescan collector` process on `--mqtt-client stock` or `tuned`, swapped in turn on the
same session and database (stock, tuned, tuned, stock at each rate, so a drift of the machine
weighs on both alike). Events fall due at a steady rate, round robin over the gates; each is
timed by its gate from when it fell due to its application ack (after the commit). After each
segment nothing new falls due until every event of it is acked (a side that fell behind leaves
no backlog to the next; how long its backlog took is in the note). Per client
and rate: the collector process's CPU per event and publish->ack p50 / p99.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

try:
    import bench  # noqa: F401
except ImportError:  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import Figure, percentile
from bench.ingest_gates import PACED
from bench.ingest_site import (
    Segment,
    Site,
    SiteRun,
    broker_drops,
    raise_open_file_limit,
    site_broker_config,
)
from gatescan.testing.broker import LocalBroker

GATES = 2000
RATES = (1000.0, 10000.0)  # events/s: one scan per gate every 2 s, and ten times that
CLIENTS = ("stock", "tuned")  # `gatescan collector --mqtt-client`
CLIENT_NAMES = {"stock": "stock paho", "tuned": "the tuned client"}
GATE_WINDOW = 100  # events a gate keeps in flight (its uplink's window)
GOAL_P99_MS = 250.0
SEGMENT_S, SETTLE_S = 10.0, 2.0
QUICK_GATES, QUICK_SEGMENT_S = 200, 4.0


@dataclass
class ClientRun(SiteRun):
    drained_s: dict[str, float]  # label -> seconds its segments' backlogs took to drain after

    def cpu_us_per_event(self, label: str) -> float:
        """The collector process's CPU time per event acked, in microseconds."""
        segments = self.chosen(label)
        cpu_s = sum(s.cpu["collector"] / 100 * (s.end - s.start) for s in segments)
        return 1e6 * cpu_s / max(1, sum(s.settled for s in segments))

    def acked_rate(self, label: str) -> float:
        """Events acked per second (a paced segment settles an event when its ack arrives)."""
        return self.rate(label)

    def p50_p99_ms(self, label: str) -> tuple[float, float]:
        latencies = self.latencies(label)
        p50, p99 = (percentile(latencies, q) * 1000 for q in (0.5, 0.99))
        return p50, p99


def label(client: str, rate: float) -> str:
    return f"{client} at {rate:.0f}/s"


def run(gates: int, rates: Sequence[float], segment_s: float) -> ClientRun:
    raise_open_file_limit(2 * gates + 200)
    with tempfile.TemporaryDirectory(prefix="gatescan-client-") as scratch:
        workdir = Path(scratch)
        with LocalBroker(workdir=workdir / "broker", extra_config=site_broker_config()) as broker:
            site = Site(broker, gates, GATE_WINDOW, workdir, baselines=(), mqtt_client=CLIENTS[0])
            segments: list[Segment] = []
            drained: dict[str, float] = {}  # label -> seconds its backlogs took to drain
            current = CLIENTS[0]
            try:
                for rate in rates:
                    for client in (*CLIENTS, *reversed(CLIENTS)):
                        if client != current:
                            site.swap_collector(client)
                            current = client
                        name = label(client, rate)
                        segments.append(site.segment(PACED, name, segment_s, SETTLE_S, rate))
                        drained[name] = drained.get(name, 0.0) + site.drain()
            finally:
                results, stored, _counters = site.finish()
            drops = broker_drops(broker)
    return ClientRun(segments, results, stored, drops, drained)


def figures_for(outcome: ClientRun, gates: int, rates: Sequence[float]) -> list[Figure]:
    figures = []
    for rate in rates:
        for client in CLIENTS:
            name = label(client, rate)
            p50, p99 = outcome.p50_p99_ms(name)
            where = f"{gates} gates at {rate:.0f} events/s, collector on {CLIENT_NAMES[client]}"
            how = (
                f"{outcome.acked_rate(name):.0f} events/s acked; p50 {p50:.1f} ms; "
                f"the backlog left drained in {outcome.drained_s[name]:.1f} s"
            )
            figures += [
                Figure(
                    "collector",
                    f"collector CPU per event, {where}",
                    outcome.cpu_us_per_event(name),
                    "us",
                    note="the collector process's CPU time over the events acked",
                ),
                Figure(
                    "collector",
                    f"publish->ack p99, {where}",
                    p99,
                    "ms",
                    at_most=GOAL_P99_MS,
                    note=how,
                ),
            ]
    figures.append(
        Figure(
            "collector",
            "events lost or dropped by the broker, stock / tuned client runs",
            outcome.lost + outcome.broker_drops,
            "events",
            at_most=0,
            note=f"{outcome.published} published, {outcome.stored} rows; each must be acked",
        )
    )
    return figures


def describe(outcome: ClientRun, rates: Sequence[float]) -> str:
    lines = []
    for rate in rates:
        for client in CLIENTS:
            name = label(client, rate)
            p50, p99 = outcome.p50_p99_ms(name)
            cpu = ", ".join(f"{p} {share:.0f}%" for p, share in outcome.cpu(name).items())
            lines.append(
                f"{name:>18}: {outcome.acked_rate(name):7.0f} events/s acked, collector CPU "
                f"{outcome.cpu_us_per_event(name):5.1f} us/event, publish->ack p50 {p50:6.1f} "
                f"ms, p99 {p99:6.1f} ms; backlog drained in {outcome.drained_s[name]:.1f} s; "
                f"CPU % of a core: {cpu}"
            )
    lines.append(
        f"published {outcome.published}, stored {outcome.stored}, lost {outcome.lost}, "
        f"broker drops logged {outcome.broker_drops}"
    )
    return "\n".join(lines)


def measure(quick: bool = False) -> list[Figure]:
    gates, segment_s = (QUICK_GATES, QUICK_SEGMENT_S) if quick else (GATES, SEGMENT_S)
    outcome = run(gates, RATES, segment_s)
    print(describe(outcome, RATES), file=sys.stderr, flush=True)
    return figures_for(outcome, gates, RATES)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--gates", type=int, default=GATES)
    parser.add_argument("--rates", default=",".join(f"{r:.0f}" for r in RATES))
    parser.add_argument("--segment", type=float, default=SEGMENT_S, help="seconds per segment")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    gates, segment_s = (QUICK_GATES, QUICK_SEGMENT_S) if args.quick else (args.gates, args.segment)
    outcome = run(gates, rates, segment_s)
    print(describe(outcome, rates))
    for figure in figures_for(outcome, gates, rates):
        print(f"{figure.name}: {figure.value_text} {figure.goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
