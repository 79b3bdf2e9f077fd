"""Collector ingest end to end: N simulated gates -> Mosquitto -> collector -> SQLite -> acks.

    python -m bench.ingest_bench [--quick] [--gates 50,500] [--rounds 3] [--segment 4]

For each N (50 and 500 gates), one real Mosquitto (the site settings of
deploy/mosquitto/gatescan.conf that matter here), and, all connected at once:

- the simulated gates (bench/ingest_gates.py: two worker processes, each driving its share of
  the gates from one selector loop), each keeping at most W events unsettled, W x N = 1,000;
- a bare paho subscriber (stock paho, QoS 1, auto PUBACK, no database, no ack back) on the
  `baseline/...` topics: the broker's and paho's own limit on this machine, the baseline;
- the real `gatescan collector` process (as a site runs it) on the `gatescan/...` topics: it
  validates every event, stores it in SQLite (WAL, synchronous=FULL), PUBACKs it and sends the
  gate its application ack.

The gates publish the same payloads (real protocol Events, about 500 bytes) to one side or the
other, switching in alternating segments (bare, collector, collector, bare, ...): other work on
the machine then weighs on both sides alike, and the ratio of the two rates compares like with
like. In each segment the first second is left out (the other side's events drain meanwhile).

Figures: events/s settled in the measured part of the segments (bare: counted by the
subscriber; collector: acked back to their gate); publish -> ack latency of the collector's
events, timed by the gate itself (the ack leaves after the commit, so this bounds publish ->
stored from above); events lost: after the run every collector event must be acked and the
database must hold exactly as many entries as events were published. CPU time per process is
printed (main) so that one can see what limits each side.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import bench  # noqa: F401
except ImportError:  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench.figures import Figure, percentile
from bench.ingest_gates import (
    BARE,
    BARE_PREFIX,
    COLLECTOR,
    DONE,
    IDLE,
    Shared,
    WorkerPlan,
    WorkerResult,
    run_worker,
)
from gatescan.broker import LocalBroker

GATE_COUNTS = (50, 500)
IN_FLIGHT_TOTAL = 1000  # W x N: events unsettled across all gates
WORKERS = 2
GOAL_RATIO, GOAL_P99_MS = 0.75, 250.0
# deploy/mosquitto/gatescan.conf's settings that matter for ingest.
BROKER_CONFIG = "max_queued_messages 10000\nmax_packet_size 65536\nmax_inflight_messages 1000\n"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODE_NAMES = {BARE: "bare", COLLECTOR: "collector"}


def raise_open_file_limit(needed: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE (the broker and the workers inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed * 4)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < needed:
        raise RuntimeError(f"open-file limit {soft} < {needed} needed: raise `ulimit -Hn`")
    return soft


def open_file_limit(pid: int) -> int | None:
    """A process's own RLIMIT_NOFILE (Linux /proc), None if it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc), 0 if it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def device_ids(gates: int) -> list[str]:
    return [f"gate-{n:04d}" for n in range(gates)]


def split(items: Sequence[str], parts: int) -> list[tuple[int, tuple[str, ...]]]:
    """(first index, items) for each of `parts` nearly equal slices."""
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for part in range(parts):
        end = start + size + (1 if part < extra else 0)
        out.append((start, tuple(items[start:end])))
        start = end
    return out


# --- the two receiving sides ------------------------------------------------------------------


def run_bare_subscriber(
    host: str, port: int, index_of: dict[str, int], received: Any, ready: Any, stop: Any
) -> None:
    """Stock paho, QoS 1: counts each gate's baseline events into `received`."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="bench-bare-subscriber",
        protocol=MQTTProtocolVersion.MQTTv5,
    )

    def on_message(_client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        received[index_of[message.topic.split("/")[3]]] += 1

    client.on_connect = lambda c, *_: c.subscribe(f"{BARE_PREFIX}/+/events", qos=1)
    client.on_subscribe = lambda *_: ready.release()
    client.on_message = on_message
    client.connect(host, port, keepalive=300)
    threading.Thread(target=lambda: (stop.wait(), client.disconnect()), daemon=True).start()
    client.loop_forever()


class CollectorProcess:
    """`gatescan collector` in its own process, as a site runs it."""

    def __init__(self, broker: LocalBroker, db: Path, log_path: Path) -> None:
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gatescan.cli", "--log-level", "info", "collector",
             "--broker", broker.url, "--db", f"sqlite:///{db}", "--username", "",
             "--client-id", f"bench-collector-{secrets.token_hex(3)}"],
            cwd=PROJECT_ROOT, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.log_path = log_path
        deadline = time.monotonic() + 60
        while "subscribed to" not in log_path.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the collector did not start:\n{log_path.read_text()}")
            time.sleep(0.05)  # a log file to poll

    def stop(self) -> str:
        """SIGTERM (it commits and acks what it holds), then its last log line."""
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""


# --- one interleaved run -----------------------------------------------------------------------


@dataclass
class Segment:
    mode: int
    start: float  # of the measured part (monotonic)
    end: float
    settled: int  # events settled in the measured part
    cpu: dict[str, float]  # process -> % of one core in the measured part


@dataclass
class Outcome:
    gates: int
    window: int
    segments: list[Segment]
    results: list[WorkerResult]
    stored: int
    collector_counters: str
    latencies: list[float] = field(default_factory=list)  # s, events published while measured

    def rate(self, mode: int) -> float:
        chosen = [s for s in self.segments if s.mode == mode]
        return sum(s.settled for s in chosen) / sum(s.end - s.start for s in chosen)

    def cpu(self, mode: int) -> dict[str, float]:
        chosen = [s for s in self.segments if s.mode == mode]
        return {name: sum(s.cpu[name] for s in chosen) / len(chosen) for name in chosen[0].cpu}

    @property
    def published(self) -> int:
        return sum(r.published_collector for r in self.results)

    @property
    def lost(self) -> int:
        """Collector events never acked, plus any the database does not hold."""
        unacked = sum(r.unsettled_collector for r in self.results)
        return unacked + max(0, self.published - self.stored)


class Site:
    """A broker, the bare subscriber, the collector and the gate workers, all connected."""

    def __init__(self, broker: LocalBroker, gates: int, workdir: Path) -> None:
        self.gates = gates
        self.window = max(1, IN_FLIGHT_TOTAL // gates)
        context = multiprocessing.get_context("spawn")
        self.shared = Shared(
            mode=context.Value("i", IDLE),
            received=context.Array("q", gates, lock=False),
            acked=context.Array("q", gates, lock=False),
        )
        self.db = workdir / f"collector-{gates}.db"
        ready, self._stop = context.Semaphore(0), context.Event()
        index_of = {device: n for n, device in enumerate(device_ids(gates))}
        self.subscriber = context.Process(
            target=run_bare_subscriber,
            args=(broker.host, broker.port, index_of, self.shared.received, ready, self._stop),
        )
        self.subscriber.start()
        if not ready.acquire(timeout=60):
            raise RuntimeError("the bare subscriber did not subscribe")
        self.collector = CollectorProcess(broker, self.db, workdir / f"collector-{gates}.log")
        self._results: Any = context.Queue()
        token = secrets.token_hex(3)
        self.workers = []
        for first, ids in split(device_ids(gates), WORKERS):
            plan = WorkerPlan(broker.host, broker.port, ids, first, self.window, token)
            worker = context.Process(
                target=run_worker, args=(plan, self.shared, ready, self._results, 120.0)
            )
            worker.start()
            self.workers.append(worker)
        for _ in self.workers:
            if not ready.acquire(timeout=120):
                raise RuntimeError("the simulated gates did not connect")
        assert broker.process is not None
        self.pids = {
            "broker": broker.process.pid,
            "subscriber": self.subscriber.pid or 0,
            "collector": self.collector.process.pid,
            **{f"gates {n + 1}": w.pid or 0 for n, w in enumerate(self.workers)},
        }

    def settled(self) -> tuple[int, int]:
        """(bare events counted, collector events acked), all gates."""
        return sum(self.shared.received), sum(self.shared.acked)

    def segment(self, mode: int, seconds: float, settle_s: float) -> Segment:
        self.shared.mode.value = mode
        time.sleep(settle_s)  # the other side drains meanwhile: not measured
        cpu_before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        start, before = time.monotonic(), self.settled()
        time.sleep(max(0.0, seconds - settle_s))  # the measured part itself
        end, after = time.monotonic(), self.settled()
        used = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in self.pids.items()}
        side = 0 if mode == BARE else 1
        cpu = {name: 100 * seconds_used / (end - start) for name, seconds_used in used.items()}
        return Segment(mode, start, end, after[side] - before[side], cpu)

    def finish(self) -> tuple[list[WorkerResult], int, str]:
        """Stop publishing, let every event settle, stop everything; (results, rows, log)."""
        self.shared.mode.value = DONE
        try:
            results = []
            for _ in self.workers:
                outcome = self._results.get(timeout=300)
                if isinstance(outcome, BaseException):
                    raise RuntimeError("a simulated gate worker failed") from outcome
                results.append(outcome)
        finally:
            self.close()
        with sqlite3.connect(self.db) as conn:
            stored = int(conn.execute("SELECT count(*) FROM entries").fetchone()[0])
        return results, stored, self._last_log_line

    def close(self) -> None:
        self._stop.set()
        for process in [*self.workers, self.subscriber]:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        self._last_log_line = self.collector.stop()


def run_interleaved(gates: int, rounds: int, segment_s: float, settle_s: float) -> Outcome:
    raise_open_file_limit(2 * gates + 200)
    with tempfile.TemporaryDirectory(prefix="gatescan-ingest-") as scratch:
        workdir = Path(scratch)
        with LocalBroker(workdir=workdir / "broker", extra_config=BROKER_CONFIG) as broker:
            assert broker.process is not None
            limit = open_file_limit(broker.process.pid)
            if limit is not None and limit < gates + 100:
                raise RuntimeError(f"the broker may open {limit} files, too few for {gates} gates")
            site = Site(broker, gates, workdir)
            segments = []
            try:
                for round_number in range(rounds):  # bare, collector, collector, bare, ...
                    order = (BARE, COLLECTOR) if round_number % 2 == 0 else (COLLECTOR, BARE)
                    segments += [site.segment(mode, segment_s, settle_s) for mode in order]
            finally:
                results, stored, counters = site.finish()
    measured = [(s.start, s.end) for s in segments if s.mode == COLLECTOR]
    latencies = [
        latency
        for result in results
        for published_at, latency in result.latencies
        if any(start <= published_at < end for start, end in measured)
    ]
    return Outcome(gates, site.window, segments, results, stored, counters, latencies)


# --- figures ------------------------------------------------------------------------------------


def describe(outcome: Outcome) -> str:
    bare, collector = outcome.rate(BARE), outcome.rate(COLLECTOR)
    lines = [
        f"N={outcome.gates} gates, W={outcome.window} unsettled per gate, "
        f"{len(outcome.segments)} segments",
        f"  bare paho pub->sub: {bare:8.0f} msg/s",
        f"  collector:          {collector:8.0f} events/s  (ratio {collector / bare:.2f})",
    ]
    if outcome.latencies:
        lines.append(
            f"  publish->ack: p50 {percentile(outcome.latencies, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(outcome.latencies, 0.99) * 1000:.1f} ms "
            f"({len(outcome.latencies)} events)"
        )
    duplicates = sum(r.duplicate_acks for r in outcome.results)
    unsettled_bare = sum(r.unsettled_bare for r in outcome.results)
    lines.append(
        f"  collector events published {outcome.published}, stored {outcome.stored}, "
        f"lost {outcome.lost}, acked twice {duplicates}; bare events unsettled {unsettled_bare}"
    )
    for mode, name in MODE_NAMES.items():
        cpu = ", ".join(f"{p} {share:.0f}%" for p, share in outcome.cpu(mode).items())
        lines.append(f"  CPU in {name} segments (% of one core): {cpu}")
    lines.append(f"  {outcome.collector_counters[-300:]}")
    return "\n".join(lines)


def figures_for(outcome: Outcome) -> list[Figure]:
    n, bare, collector = outcome.gates, outcome.rate(BARE), outcome.rate(COLLECTOR)
    how = f"{n} gates, {outcome.window} unsettled each; segments alternate with the bare run"
    p50 = percentile(outcome.latencies, 0.5) * 1000 if outcome.latencies else float("inf")
    p99 = percentile(outcome.latencies, 0.99) * 1000 if outcome.latencies else float("inf")
    return [
        Figure(
            "collector", f"bare paho QoS 1 pub->sub, {n} gates", bare, "msg/s", note="baseline"
        ),
        Figure("collector", f"ingest sustained, {n} gates", collector, "events/s", note=how),
        Figure(
            "collector",
            f"ingest / bare paho, {n} gates",
            collector / bare,
            "ratio",
            at_least=GOAL_RATIO,
            note="same run, same simulator, same payloads",
        ),
        Figure("collector", f"publish->ack p50, {n} gates", p50, "ms", note="at full load"),
        Figure(
            "collector",
            f"publish->ack p99, {n} gates",
            p99,
            "ms",
            at_most=GOAL_P99_MS,
            note="ack after commit: bounds publish->stored",
        ),
        Figure(
            "collector",
            f"events lost, {n} gates",
            outcome.lost,
            "events",
            at_most=0,
            note=f"{outcome.published} published, {outcome.stored} rows",
        ),
    ]


def measure(quick: bool = False) -> list[Figure]:
    rounds, segment_s, settle_s = (1, 3.0, 1.0) if quick else (3, 5.0, 1.0)
    figures: list[Figure] = []
    for gates in GATE_COUNTS:
        figures += figures_for(run_interleaved(gates, rounds, segment_s, settle_s))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round per N")
    parser.add_argument("--gates", default=",".join(map(str, GATE_COUNTS)))
    parser.add_argument("--rounds", type=int, default=3, help="pairs of segments per N")
    parser.add_argument("--segment", type=float, default=5.0, help="seconds per segment")
    args = parser.parse_args()
    rounds, segment_s = (1, 3.0) if args.quick else (args.rounds, args.segment)
    for gates in (int(g) for g in args.gates.split(",")):
        print(describe(run_interleaved(gates, rounds, segment_s, 1.0)), flush=True)


if __name__ == "__main__":
    main()
