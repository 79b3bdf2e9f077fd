"""Collector ingest end to end: N simulated gates -> Mosquitto -> collector -> SQLite -> acks.

    python -m bench.ingest_bench [--quick] [--gates 50,500] [--rounds 3] [--segment 5]

For each N (50 and 500 gates): one real Mosquitto with the site settings of
deploy/mosquitto/gatescan.conf that matter here, and, all connected at once (ingest_site.py):

- the simulated gates (ingest_gates.py: two worker processes, each driving its share of the
  gates from one selector loop, on the collector's own client, the fastest load generator here);
- two bare subscribers, QoS 1, PUBACKing what they receive, no database, no ack back:
  the fair baseline on the collector's own MQTT client (server/collector/client.py, same socket
  options, same receive window), on the `basetune/...` topics: what the broker and that client
  move on this machine, so the ratio is what validating, storing and acking cost on top of
  receiving; and stock paho with its defaults on the `baseline/...` topics, what a user's own
  subscriber would get, for context;
- the real `gatescan collector` process, as a site runs it, on the `gatescan/...` topics: it
  validates every event, stores it in SQLite (WAL, synchronous=FULL), acks it to its gate and
  PUBACKs it.

1. Throughput. The gates publish the same payloads (real protocol Events, about 500 bytes) to
   one side or another, in segments whose order turns each round (stock, tuned, collector;
   tuned, collector, stock; ...), each gate keeping W events unsettled (N x W = 4,000, as gates
   flushing their outboxes after an outage): other work on the machine weighs on every side
   alike, and the ratio of two rates compares like with like. Settled: counted by the
   subscriber; acked back to the gate.
2. Latency. Then collector events fall due at a steady rate, 0.5 and 0.75 x the fair baseline's
   rate just measured (0.75: the throughput the goal asks for), and 0.75 x stock paho's (the load
   the goal named before the fair baseline, for context), round robin over the gates, each load
   starting with nothing waiting; each event is timed by its gate from when it fell due to when
   its ack arrived. The ack leaves after the
   commit, so this bounds publish -> stored from above. (At full load the latency is only
   queueing: N x W events in flight over the rate; main() prints it.)
3. Nothing lost: after the run every collector event must be acked and the database must hold
   exactly as many entries as events were published.

Each segment's first second is not measured (the previous one's events drain meanwhile). main()
also prints the CPU time of every process per segment, to see what limits each side.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from math import inf
from pathlib import Path

try:
    import bench  # noqa: F401
except ImportError:  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import Figure, percentile
from bench.ingest_gates import BARE, BARE_TUNED, COLLECTOR, PACED
from bench.ingest_site import (
    Site,
    SiteRun,
    broker_drops,
    open_file_limit,
    raise_open_file_limit,
    rate_of,
    site_broker_config,
)
from gatescan.testing.broker import LocalBroker

GATE_COUNTS = (50, 500)
# W x N: events unsettled across all gates, as when gates flush their outboxes after an outage
# (a gate keeps up to 100 in flight). Deep enough that both sides run at their full rate.
IN_FLIGHT_TOTAL = 4000
GOAL_RATIO, GOAL_P99_MS = 0.75, 250.0
# Steady loads for the latency.
# (baseline, fraction of its rate): the goal's load is GOAL_RATIO x the fair baseline; the same
# fraction of stock paho's rate is the load the goal named before the fair baseline, for context.
PACED_LOADS = ((BARE_TUNED, 0.5), (BARE_TUNED, GOAL_RATIO), (BARE, GOAL_RATIO))
MODE_NAMES = {BARE: "bare stock", BARE_TUNED: "bare tuned", COLLECTOR: "collector"}
# Each round's order of the full-load segments: turned by one each round.
FULL_LOAD_ORDER = (BARE, BARE_TUNED, COLLECTOR)


@dataclass
class Outcome(SiteRun):
    gates: int
    window: int
    collector_counters: str


def run_interleaved(gates: int, rounds: int, segment_s: float, settle_s: float) -> Outcome:
    raise_open_file_limit(2 * gates + 200)
    with tempfile.TemporaryDirectory(prefix="gatescan-ingest-") as scratch:
        workdir = Path(scratch)
        with LocalBroker(workdir=workdir / "broker", extra_config=site_broker_config()) as broker:
            assert broker.process is not None
            limit = open_file_limit(broker.process.pid)
            if limit is not None and limit < gates + 100:
                raise RuntimeError(f"the broker may open {limit} files, too few for {gates} gates")
            site = Site(broker, gates, max(1, IN_FLIGHT_TOTAL // gates), workdir)
            segments = []
            try:
                for round_number in range(rounds):
                    turn = round_number % len(FULL_LOAD_ORDER)
                    for mode in FULL_LOAD_ORDER[turn:] + FULL_LOAD_ORDER[:turn]:
                        segments.append(site.segment(mode, MODE_NAMES[mode], segment_s, settle_s))
                # Then the latency at steady loads: fractions of the baselines just measured.
                for baseline, fraction in PACED_LOADS:
                    site.drain()  # each steady load starts with nothing waiting
                    rate = fraction * rate_of(segments, MODE_NAMES[baseline])
                    label = paced_label(baseline, fraction)
                    segments.append(site.segment(PACED, label, 2 * segment_s, settle_s, rate))
            finally:
                results, stored, counters = site.finish()
            drops = broker_drops(broker)
    return Outcome(segments, results, stored, drops, gates, site.window, counters)


def paced_label(baseline: int, fraction: float) -> str:
    return f"paced at {fraction:.2f} x {MODE_NAMES[baseline]}"


# --- figures ------------------------------------------------------------------------------------


def describe(outcome: Outcome) -> str:
    stock, bare = outcome.rate(MODE_NAMES[BARE]), outcome.rate(MODE_NAMES[BARE_TUNED])
    collector = outcome.rate("collector")
    lines = [
        f"N={outcome.gates} gates, W={outcome.window} unsettled per gate at full load",
        f"  bare, stock paho:   {stock:8.0f} msg/s",
        f"  bare, tuned client: {bare:8.0f} msg/s (the fair baseline)",
        f"  collector:          {collector:8.0f} events/s (ratio {collector / bare:.2f} to the "
        f"fair baseline, {collector / stock:.2f} to stock paho), "
        f"publish->ack {latency_text(outcome.latencies('collector'))} at full load",
    ]
    for baseline, fraction in PACED_LOADS:
        label = paced_label(baseline, fraction)
        offered = fraction * outcome.rate(MODE_NAMES[baseline])
        lines.append(
            f"  {label}: {outcome.rate(label):8.0f} events/s acked of {offered:.0f} "
            f"offered, publish->ack {latency_text(outcome.latencies(label))}"
        )
    duplicates = sum(r.duplicate_acks for r in outcome.results)
    unsettled_bare = sum(r.unsettled_bare for r in outcome.results)
    behind = max(r.paced_behind for r in outcome.results)
    lines.append(
        f"  collector events published {outcome.published}, stored {outcome.stored}, "
        f"lost {outcome.lost}, acked twice {duplicates}; bare events unsettled {unsettled_bare}; "
        f"broker drops logged {outcome.broker_drops}; "
        f"paced events waiting for room in a window, at most {behind}"
    )
    for label in dict.fromkeys(segment.label for segment in outcome.segments):
        cpu = ", ".join(f"{p} {share:.0f}%" for p, share in outcome.cpu(label).items())
        lines.append(f"  CPU, {label} (% of one core): {cpu}")
    lines.append(f"  {outcome.collector_counters[-300:]}")
    return "\n".join(lines)


def latency_text(latencies: Sequence[float]) -> str:
    if not latencies:
        return "(no events)"
    p50, p99 = (percentile(latencies, q) * 1000 for q in (0.5, 0.99))
    return f"p50 {p50:.0f} ms, p99 {p99:.0f} ms"


# What runs on each side, for the figures' notes.
SIDES = "gates: the collector's client; collector: `gatescan collector` (its default client)"


def figures_for(outcome: Outcome) -> list[Figure]:
    n = outcome.gates
    stock, bare = outcome.rate(MODE_NAMES[BARE]), outcome.rate(MODE_NAMES[BARE_TUNED])
    collector = outcome.rate("collector")
    return [
        Figure(
            "collector",
            f"bare QoS 1 pub->sub, stock paho, {n} gates",
            stock,
            "msg/s",
            note="what a user's own subscriber gets: stock paho, its defaults; PUBACK only",
        ),
        Figure(
            "collector",
            f"bare QoS 1 pub->sub, the collector's client, {n} gates",
            bare,
            "msg/s",
            note="the fair baseline: same client, socket options and receive window as the "
            "collector; PUBACK only, nothing stored",
        ),
        Figure(
            "collector",
            f"ingest sustained, {n} gates",
            collector,
            "events/s",
            note=f"{outcome.window} unsettled per gate; segments alternate with the bare runs; "
            + SIDES,
        ),
        Figure(
            "collector",
            f"ingest / bare on the collector's client, {n} gates",
            collector / bare,
            "ratio",
            at_least=GOAL_RATIO,
            note="what validating, storing and acking cost on top of receiving; same run, "
            "same simulator, same payloads",
        ),
        Figure(
            "collector",
            f"ingest / bare stock paho, {n} gates",
            collector / stock,
            "ratio",
            note="context: against a subscriber on stock paho",
        ),
        *latency_figures(outcome),
        Figure(
            "collector",
            f"events lost, {n} gates",
            outcome.lost,
            "events",
            at_most=0,
            note=f"{outcome.published} published, {outcome.stored} rows; each must be acked",
        ),
        Figure(
            "collector",
            f"broker drops and bare events unsettled, {n} gates",
            outcome.broker_drops + sum(r.unsettled_bare for r in outcome.results),
            "events",
            at_most=0,
            note="a baseline that loses messages measures nothing: the broker's log must show "
            "no drop and every bare event must be counted",
        ),
    ]


def latency_figures(outcome: Outcome) -> list[Figure]:
    """p50 and p99 at the goal's load (GOAL_RATIO x the fair baseline), p99 at the others."""
    figures = []
    for baseline, fraction in PACED_LOADS:
        label = paced_label(baseline, fraction)
        latencies = outcome.latencies(label)
        p50, p99 = (percentile(latencies, q) * 1000 if latencies else inf for q in (0.5, 0.99))
        offered = fraction * outcome.rate(MODE_NAMES[baseline])
        which = "the fair baseline" if baseline == BARE_TUNED else "stock paho"
        where = f"at {fraction:.2f} x {which} ({offered:.0f} events/s, paced), "
        where += f"{outcome.gates} gates"
        at_goal = (baseline, fraction) == (BARE_TUNED, GOAL_RATIO)
        if at_goal:
            figures.append(Figure("collector", f"publish->ack p50 {where}", p50, "ms"))
        acked = f"{outcome.rate(label):.0f} events/s acked"
        figures.append(
            Figure(
                "collector",
                f"publish->ack p99 {where}",
                p99,
                "ms",
                at_most=GOAL_P99_MS if at_goal else None,
                note=f"{acked}; the ack leaves after the commit: bounds publish->stored",
            )
        )
    return figures


ROUNDS, SEGMENT_S, SETTLE_S = 3, 5.0, 1.0
QUICK_ROUNDS, QUICK_SEGMENT_S = 1, 3.0


def measure(quick: bool = False) -> list[Figure]:
    """The figures for `make bench`; the details of each run go to stderr."""
    rounds, segment_s = (QUICK_ROUNDS, QUICK_SEGMENT_S) if quick else (ROUNDS, SEGMENT_S)
    figures: list[Figure] = []
    for gates in GATE_COUNTS:
        outcome = run_interleaved(gates, rounds, segment_s, SETTLE_S)
        print(describe(outcome), file=sys.stderr, flush=True)
        figures += figures_for(outcome)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round per N")
    parser.add_argument("--gates", default=",".join(map(str, GATE_COUNTS)))
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="pairs of segments per N")
    parser.add_argument("--segment", type=float, default=SEGMENT_S, help="seconds per segment")
    args = parser.parse_args()
    rounds, segment_s = (
        (QUICK_ROUNDS, QUICK_SEGMENT_S) if args.quick else (args.rounds, args.segment)
    )
    for gates in (int(g) for g in args.gates.split(",")):
        print(describe(run_interleaved(gates, rounds, segment_s, SETTLE_S)), flush=True)


if __name__ == "__main__":
    main()
