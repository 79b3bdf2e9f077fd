"""One collector against two in a shared group, on PostgreSQL (issue 16).

    python -m bench.collectors_bench [--quick] [--gates 500,5000] [--rounds 1] [--segment 5]

For each N (500 and 5,000 simulated gates), one run of the ingest benchmark's site
(bench/ingest_site.py: one Mosquitto with the site's settings, the bare subscribers, the gates'
two worker processes) with the collectors' database on a PostgreSQL started for the run
(gatescan/testing/postgres.py: initdb in a temporary folder, unix socket; fsync,
synchronous_commit and full_page_writes off, so its figures are the CPU's, not a disk's). In each
round, at full load (N x W = 4,000 events unsettled, as gates flushing their outboxes; W at least
1, so 5,000 gates keep 5,000):

1. the bare baselines, nothing stored: stock paho (BARE) and the collector's own client
   (BARE_TUNED, the fair baseline of bench/ingest_bench.py);
2. one `gatescan collector` process (a member of the share group alone): stored events/s
   (acked back to the gates: the ack leaves after the commit), then publish->ack at a steady
   load of PACED_FRACTION x the one collector's rate just measured;
3. two `gatescan collector` processes in one share group (`$share/collectors/...`, each its own
   client id; the second with `--no-publish-policy`, as a site runs them): the same two segments
   at the same steady load.

Each phase's collectors are started for it and stopped after it (everything settled first), so
each process's own count of what it stored (its counters, logged as it stops) is its share of
that phase. CPU per event comes from /proc for every process: each collector, the broker, the
PostgreSQL cluster (its postmaster and every backend), the gates' workers.

Checks: nothing lost (every collector event acked, the database holds exactly as many rows as
events were published, each event_id once), nothing stored twice (the collectors' duplicates and
the gates' acks of an id twice are 0), and the broker's log shows no dropped message.

This machine has two cores shared by everything above: two collectors show how the events are
shared and what each costs, not a speed-up (docs/scaling.md, sections 2 and 3).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

try:
    import bench  # noqa: F401
except ImportError:  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text

from bench.figures import Figure, percentile
from bench.ingest_gates import BARE, BARE_TUNED, COLLECTOR, PACED
from bench.ingest_site import (
    Segment,
    Site,
    SiteRun,
    broker_drops,
    cpu_seconds,
    open_file_limit,
    raise_open_file_limit,
    rate_of,
    site_broker_config,
)
from gatescan.testing.broker import LocalBroker
from gatescan.testing.collector_process import CollectorProcess
from gatescan.testing.postgres import PostgresServer, running_postgres

GATE_COUNTS = (500, 5000)
IN_FLIGHT_TOTAL = 4000  # as bench/ingest_bench.py
PACED_FRACTION = 0.3  # the steady load for the latency: this x one collector's full rate
BARE_NAMES = {BARE: "bare stock", BARE_TUNED: "bare tuned"}
ONE, TWO = "one collector", "two collectors"
COLLECTOR_COUNTS = {ONE: 1, TWO: 2}
STOPPED = "collector stopped: CollectorCounters("  # its counters, logged as it stops
_COUNTER = re.compile(r"\b(received|stored|duplicates|batches)=(\d+)")


def paced(phase: str) -> str:
    return f"{phase}, paced"


# --- CPU of a process tree (PostgreSQL: a postmaster and one backend per connection) ----------


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, of its children now running (recursively), and of
    its children that have exited (their times, added to the parent's when it reaped them)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    reaped = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    return cpu_seconds(pid) + reaped + sum(tree_cpu_seconds(int(child)) for child in children)


# --- the site ------------------------------------------------------------------------------------


@dataclass
class Share:
    """What one collector process counted over its life (one phase): from its stop line."""

    phase: str
    process: str  # "collector 1", "collector 2"
    received: int
    stored: int
    duplicates: int
    batches: int  # transactions committed


class CollectorsSite(Site):
    """The ingest site on PostgreSQL, with one or two collectors at a time, each started for its
    phase with an id of its own (its session ends with its clean stop: no share of the events is
    queued for a member gone)."""

    def __init__(
        self, broker: LocalBroker, gates: int, window: int, workdir: Path, postgres: PostgresServer
    ) -> None:
        self.postgres = postgres
        db_url = postgres.url(postgres.create_database()).render_as_string(hide_password=False)
        self.collectors: list[CollectorProcess] = []
        self.shares: list[Share] = []
        self.phase = ONE
        super().__init__(broker, gates, window, workdir, db_url=db_url)
        self.collectors = [self.collector]
        self.pids["collector 1"] = self.pids.pop("collector")

    def _start_collector(self, mqtt_client: str | None, number: int = 1) -> CollectorProcess:
        return CollectorProcess(
            broker_url=self._broker.url,
            db_url=self.db_url,
            log_path=self._workdir / f"collector-{self.gates}-{number}.log",
            client_id=None,  # an id of its own, its session ended by its clean stop
            username="",
            mqtt_client=mqtt_client,
            options=() if number == 1 else ("--no-publish-policy",),
        ).wait_until_subscribed(60)

    def cpu_now(self) -> dict[str, float]:
        return {**super().cpu_now(), "postgres": tree_cpu_seconds(self.postgres.pid)}

    def start_phase(self, phase: str) -> None:
        """Settle everything, stop the collectors running (their counts kept) and start the
        phase's."""
        self.drain()
        self._stop_collectors()
        self.phase = phase
        for number in range(1, COLLECTOR_COUNTS[phase] + 1):
            process = self._start_collector(None, number)
            self.collectors.append(process)
            self.pids[f"collector {number}"] = process.pid
        self.collector = self.collectors[0]

    def _stop_collectors(self) -> None:
        for number, process in enumerate(self.collectors, start=1):
            process.stop()
            self.pids.pop(f"collector {number}", None)
            self.shares.append(share_of_process(self.phase, f"collector {number}", process))
        self.collectors = []

    def close(self) -> None:
        """Stop everything; the last phase's collectors' counts kept."""
        self._stop.set()
        for process in [*self.workers, *self.subscribers.values()]:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        self._last_log_line = self.collector.last_log_line() if self.collectors else ""
        self._stop_collectors()


def share_of_process(phase: str, name: str, process: CollectorProcess) -> Share:
    """A stopped collector's own counts, from the line it logs as it stops."""
    text = process.log_text()
    if STOPPED not in text:
        raise RuntimeError(f"{name} logged no counters at its stop:\n{text[-2000:]}")
    line = text.rsplit(STOPPED, 1)[1].split("\n", 1)[0]
    counts = {key: int(value) for key, value in _COUNTER.findall(line)}
    return Share(phase, name, counts["received"], counts["stored"], counts["duplicates"],
                 counts["batches"])  # fmt: skip


@dataclass
class Outcome(SiteRun):
    gates: int
    window: int
    shares: list[Share] = field(default_factory=list)
    distinct_ids: int = 0

    def cpu_us_per_event(self, label: str) -> dict[str, float]:
        """Each process's CPU µs per event settled over `label`'s segments."""
        chosen = self.chosen(label)
        settled = sum(s.settled for s in chosen)
        names = chosen[0].cpu
        used = {n: sum(s.cpu[n] / 100 * (s.end - s.start) for s in chosen) for n in names}
        return {n: 1e6 * seconds / max(settled, 1) for n, seconds in used.items()}

    def share_of(self, phase: str) -> dict[str, float]:
        """Each collector's fraction of what its phase's collectors stored."""
        mine = [s for s in self.shares if s.phase == phase]
        total = sum(s.stored for s in mine)
        out: dict[str, float] = {}
        for s in mine:
            out[s.process] = out.get(s.process, 0.0) + s.stored
        return {process: stored / max(total, 1) for process, stored in out.items()}

    def events_per_commit(self, phase: str) -> float:
        """Events stored per transaction by the phase's collectors (one batch, one commit)."""
        mine = [s for s in self.shares if s.phase == phase]
        return sum(s.stored for s in mine) / max(1, sum(s.batches for s in mine))

    @property
    def collectors_stored(self) -> int:
        return sum(s.stored for s in self.shares)

    @property
    def duplicates(self) -> int:
        """Events stored twice or acked twice: the collectors' duplicates, the gates' acks of an
        id twice, rows beyond the distinct event ids."""
        return (
            sum(s.duplicates for s in self.shares)
            + sum(r.duplicate_acks for r in self.results)
            + (self.stored - self.distinct_ids)
        )


def distinct_event_ids(db_url: str) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(text("SELECT count(DISTINCT event_id) FROM entries")) or 0)
    finally:
        engine.dispose()


def run(
    gates: int, rounds: int, segment_s: float, settle_s: float, postgres: PostgresServer
) -> Outcome:
    raise_open_file_limit(2 * gates + 200)
    with tempfile.TemporaryDirectory(prefix="gatescan-collectors-") as scratch:
        workdir = Path(scratch)
        with LocalBroker(workdir=workdir / "broker", extra_config=site_broker_config()) as broker:
            assert broker.process is not None
            limit = open_file_limit(broker.process.pid)
            if limit is not None and limit < gates + 100:
                raise RuntimeError(f"the broker may open {limit} files, too few for {gates} gates")
            site = CollectorsSite(
                broker, gates, max(1, IN_FLIGHT_TOTAL // gates), workdir, postgres
            )
            segments: list[Segment] = []
            try:
                for round_number in range(rounds):
                    # Turn the order each round: other work on the machine weighs on all alike.
                    bare = (BARE, BARE_TUNED) if round_number % 2 == 0 else (BARE_TUNED, BARE)
                    phases = (ONE, TWO) if round_number % 2 == 0 else (TWO, ONE)
                    for mode in bare:
                        segments.append(site.segment(mode, BARE_NAMES[mode], segment_s, settle_s))
                    for phase in phases:
                        if round_number or phase != ONE:
                            site.start_phase(phase)
                        segments.append(site.segment(COLLECTOR, phase, segment_s, settle_s))
                        site.drain()  # the steady load starts with nothing waiting
                        rate = PACED_FRACTION * rate_of(segments, ONE)
                        segments.append(
                            site.segment(PACED, paced(phase), 2 * segment_s, settle_s, rate)
                        )
                site.drain()
            finally:
                results, stored, _ = site.finish()
            drops = broker_drops(broker)
            distinct = distinct_event_ids(site.db_url)
    return Outcome(
        segments, results, stored, drops, gates, site.window, site.shares, distinct_ids=distinct
    )


# --- figures -------------------------------------------------------------------------------------


def latency_ms(outcome: Outcome, label: str) -> tuple[float, float]:
    latencies = outcome.latencies(label)
    if not latencies:
        return float("inf"), float("inf")
    return percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000


def cpu_groups(per_event: dict[str, float]) -> dict[str, float]:
    """µs per event by kind of process: the collectors together, PostgreSQL, the broker, the
    simulated gates together."""
    groups = dict.fromkeys(CPU_GROUPS.values(), 0.0)
    for name, us in per_event.items():
        for prefix, group in CPU_GROUPS.items():
            if name.startswith(prefix):
                groups[group] += us
    return groups


# The process names of `CollectorsSite.pids` (a prefix) -> their group in the figures.
CPU_GROUPS = {
    "collector ": "collectors",
    "postgres": "postgres",
    "broker": "broker",
    "gates ": "gates",
}


def describe(outcome: Outcome) -> str:
    stock, tuned = (outcome.rate(BARE_NAMES[m]) for m in (BARE, BARE_TUNED))
    lines = [
        f"N={outcome.gates} gates, W={outcome.window} unsettled per gate at full load, PostgreSQL",
        f"  bare, stock paho:   {stock:8.0f} msg/s",
        f"  bare, tuned client: {tuned:8.0f} msg/s (the fair baseline)",
    ]
    for phase in (ONE, TWO):
        rate = outcome.rate(phase)
        p50, p99 = latency_ms(outcome, paced(phase))
        offered = PACED_FRACTION * outcome.rate(ONE)
        share = ", ".join(f"{p} {f:.0%}" for p, f in outcome.share_of(phase).items())
        per_event = outcome.cpu_us_per_event(phase)
        cpu = ", ".join(f"{p} {us:.0f}" for p, us in per_event.items())
        lines += [
            f"  {phase + ':':16s} {rate:8.0f} events/s stored (ratio {rate / tuned:.2f} to the "
            f"fair baseline, {rate / stock:.2f} to stock paho); at {offered:.0f} events/s paced: "
            f"{outcome.rate(paced(phase)):.0f} acked, publish->ack p50 {p50:.0f} ms, "
            f"p99 {p99:.0f} ms",
            f"    share: {share}; {outcome.events_per_commit(phase):.1f} events per commit",
            f"    CPU µs per event at full load: {cpu}",
        ]
    lines.append(
        f"  collector events published {outcome.published}, rows {outcome.stored} "
        f"({outcome.distinct_ids} distinct ids), "
        f"the collectors' own counts {outcome.collectors_stored}; "
        f"lost {outcome.lost}, duplicates {outcome.duplicates}, broker drops {outcome.broker_drops}"
    )
    for label in dict.fromkeys(segment.label for segment in outcome.segments):
        cpu = ", ".join(f"{p} {share:.0f}%" for p, share in outcome.cpu(label).items())
        lines.append(f"  CPU, {label} (% of one core): {cpu}")
    return "\n".join(lines)


NOTE = (
    "PostgreSQL on /dev/shm, fsync/synchronous_commit off; 2 cores shared by broker, "
    "collectors, PostgreSQL and the gates' simulator"
)


def figures_for(outcome: Outcome) -> list[Figure]:
    n = outcome.gates
    tuned = outcome.rate(BARE_NAMES[BARE_TUNED])
    figures = [
        Figure(
            "collectors",
            f"bare QoS 1 pub->sub, stock paho, {n} gates",
            outcome.rate(BARE_NAMES[BARE]),
            "msg/s",
            note="the bare baseline, same run; PUBACK only, nothing stored",
        ),
        Figure(
            "collectors",
            f"bare QoS 1 pub->sub, the collector's client, {n} gates",
            tuned,
            "msg/s",
            note="the fair baseline, same run: the collector's client and receive window",
        ),
    ]
    offered = PACED_FRACTION * outcome.rate(ONE)
    for phase in (ONE, TWO):
        rate = outcome.rate(phase)
        p50, p99 = latency_ms(outcome, paced(phase))
        groups = cpu_groups(outcome.cpu_us_per_event(phase))
        share = ", ".join(f"{p} {f:.0%}" for p, f in outcome.share_of(phase).items())
        commits = f"{outcome.events_per_commit(phase):.0f} events per commit"
        load = f"at {offered:.0f} events/s ({PACED_FRACTION} x one collector's rate), {n} gates"
        figures += [
            Figure(
                "collectors",
                f"{phase}, PostgreSQL, stored, {n} gates",
                rate,
                "events/s",
                note=f"{rate / tuned:.2f} x the fair baseline; share: {share}; {commits}; {NOTE}",
            ),
            Figure("collectors", f"{phase}, publish->ack p50 {load}", p50, "ms"),
            Figure(
                "collectors",
                f"{phase}, publish->ack p99 {load}",
                p99,
                "ms",
                note=f"{outcome.rate(paced(phase)):.0f} events/s acked; the ack leaves after "
                "the commit",
            ),
            Figure(
                "collectors",
                f"{phase}, the collectors' CPU per event, {n} gates",
                groups["collectors"],
                "µs",
                note="all collector processes together, at full load",
                cpu_bound=True,
            ),
            Figure(
                "collectors",
                f"{phase}, PostgreSQL's and the broker's CPU per event, {n} gates",
                groups["postgres"] + groups["broker"],
                "µs",
                note=f"PostgreSQL (postmaster and backends) {groups['postgres']:.0f} µs, "
                f"Mosquitto {groups['broker']:.0f} µs; the simulated gates "
                f"{groups['gates']:.0f} µs besides",
            ),
        ]
    figures += [
        Figure(
            "collectors",
            f"events lost, {n} gates",
            outcome.lost,
            "events",
            at_most=0,
            note=f"{outcome.published} published, {outcome.stored} rows; each must be acked",
        ),
        Figure(
            "collectors",
            f"events stored or acked twice, and broker drops, {n} gates",
            outcome.duplicates + outcome.broker_drops,
            "events",
            at_most=0,
            note=f"{outcome.distinct_ids} distinct event ids in {outcome.stored} rows; "
            f"the collectors' own counts: {outcome.collectors_stored} stored",
        ),
    ]
    return figures


ROUNDS, SEGMENT_S, SETTLE_S = 1, 5.0, 1.0
QUICK_GATES, QUICK_SEGMENT_S = (50,), 2.0


def measure(quick: bool = False, gate_counts: Sequence[int] | None = None) -> list[Figure]:
    """The figures for `make bench`; the details of each run go to stderr."""
    counts = gate_counts or (QUICK_GATES if quick else GATE_COUNTS)
    segment_s = QUICK_SEGMENT_S if quick else SEGMENT_S
    figures: list[Figure] = []
    with running_postgres() as postgres:
        for gates in counts:
            outcome = run(gates, ROUNDS, segment_s, SETTLE_S if not quick else 0.5, postgres)
            print(describe(outcome), file=sys.stderr, flush=True)
            figures += figures_for(outcome)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 gates, short segments")
    parser.add_argument("--gates", default=",".join(map(str, GATE_COUNTS)))
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds of every segment per N")
    parser.add_argument("--segment", type=float, default=SEGMENT_S, help="seconds per segment")
    args = parser.parse_args()
    gates = QUICK_GATES if args.quick else tuple(int(g) for g in args.gates.split(","))
    segment_s = QUICK_SEGMENT_S if args.quick else args.segment
    with running_postgres() as postgres:
        for n in gates:
            print(describe(run(n, args.rounds, segment_s, SETTLE_S, postgres)), flush=True)


if __name__ == "__main__":
    main()
