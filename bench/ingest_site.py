"""The ingest benchmark's site: one Mosquitto, a bare paho subscriber, the collector process and
the simulated gates' worker processes, all connected at once (bench/ingest_bench.py drives it).

Also the Linux details it needs: the open-file limit for hundreds of clients, and CPU seconds
per process from /proc.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import resource
import secrets
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import create_engine, text

from bench.ingest_gates import (
    BARE,
    BARE_PREFIXES,
    BARE_TUNED,
    DONE,
    IDLE,
    PACED,
    WAITING_EVERY_S,
    Shared,
    WorkerPlan,
    WorkerResult,
    run_worker,
)
from gatescan.testing.broker import LocalBroker
from gatescan.testing.collector_process import CollectorProcess
from server.collector.client import IngestClient
from server.collector.service import RECEIVE_WINDOW
from server.collector.writer import MAX_BATCH

WORKERS = 2  # simulator processes, one per core
SUBSCRIBER_NAMES = {BARE: "stock paho", BARE_TUNED: "tuned client"}
PROJECT_ROOT = Path(__file__).resolve().parents[1]
SITE_CONFIG = PROJECT_ROOT / "deploy" / "mosquitto" / "gatescan.conf"
# The site broker's settings that matter for ingest (its listener, users and files do not).
SITE_OPTIONS = (
    "max_queued_messages",
    "max_packet_size",
    "max_inflight_messages",
    "set_tcp_nodelay",
)


# Mosquitto 2.0.11 logs "Outgoing messages are being dropped for client X" when it drops.
BROKER_DROPPED = "Outgoing messages are being dropped"
# The bench's queue limit per client. With the site's 10,000, Mosquitto 2.0.11 dropped messages
# for the fair baseline's subscriber (the collector's client, receive window 4,000, acking as
# fast as it reads) although the gates never had more than 4,000 of its messages unsettled; the
# collector, slower, never reached the limit. A bare subscriber that loses messages measures
# nothing, so the bench lifts the limit for every side alike, and fails if the broker's log shows
# a drop all the same (broker_drops).
BENCH_MAX_QUEUED = 1_000_000


def site_broker_config(max_queued_messages: int | None = BENCH_MAX_QUEUED) -> str:
    """SITE_OPTIONS as deploy/mosquitto/gatescan.conf sets them, for the bench's own broker;
    `max_queued_messages` replaces the site's (None keeps it)."""
    lines = SITE_CONFIG.read_text(encoding="utf-8").splitlines()
    chosen = [line for line in lines if line.split(" ", 1)[0] in SITE_OPTIONS]
    if len(chosen) != len(SITE_OPTIONS):
        raise RuntimeError(f"{SITE_CONFIG} no longer sets each of {', '.join(SITE_OPTIONS)}")
    if max_queued_messages is not None:
        chosen = [
            f"max_queued_messages {max_queued_messages}"
            if line.startswith("max_queued_messages ")
            else line
            for line in chosen
        ]
    return "\n".join(chosen) + "\n"


def broker_drops(broker: LocalBroker) -> int:
    """How many times the broker logged that it dropped messages for a client."""
    return broker.log_text().count(BROKER_DROPPED)


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
    mode: int, host: str, port: int, index_of: dict[str, int], received: Any, ready: Any, stop: Any
) -> None:
    """Counts each gate's events on the `mode` baseline topics into `received`, QoS 1, nothing
    stored: BARE on stock paho (PUBACK as each arrives) as a user's own subscriber would have
    it; BARE_TUNED on the collector's own client, connected as the collector connects, PUBACKing
    from a second thread as the collector's writer does, without the database (the fair
    baseline)."""
    if mode == BARE_TUNED:
        client: mqtt.Client = tuned_subscriber(received, index_of)
        properties = Properties(PacketTypes.CONNECT)
        properties.ReceiveMaximum = RECEIVE_WINDOW
    else:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="bench-bare-subscriber",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        client.on_message = lambda _c, _u, message: count(received, index_of, message)
        properties = None
    topic = f"{BARE_PREFIXES[mode]}/+/events"
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *_: ready.release()
    client.connect(host, port, keepalive=300, properties=properties)
    client.loop_start()
    stop.wait()
    client.disconnect()
    client.loop_stop()


def count(received: Any, index_of: dict[str, int], message: mqtt.MQTTMessage) -> None:
    received[index_of[message.topic.split("/")[3]]] += 1


def tuned_subscriber(received: Any, index_of: dict[str, int]) -> IngestClient:
    """The collector's client with manual PUBACKs: the network thread counts each message and
    hands its mid over; an acker thread PUBACKs what it finds, all at once, as the collector's
    writer does after each commit."""
    client = IngestClient(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="bench-bare-tuned-subscriber",
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=True,
    )
    mids: queue.SimpleQueue[int] = queue.SimpleQueue()

    def on_message(_client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        count(received, index_of, message)
        mids.put(message.mid)

    def acker() -> None:
        while True:
            batch = [mids.get()]
            with suppress(queue.Empty):
                while len(batch) < MAX_BATCH:
                    batch.append(mids.get_nowait())
            with client.one_wakeup():
                client.ack_many(batch)

    client.on_message = on_message
    threading.Thread(target=acker, daemon=True).start()
    return client


@dataclass
class Segment:
    mode: int
    label: str  # "bare", "collector", "paced 0.75", ...
    start: float  # of the measured part (monotonic)
    end: float
    settled: int  # events settled in the measured part
    cpu: dict[str, float]  # process -> % of one core in the measured part


@dataclass
class SiteRun:
    """What one run of the site measured: its segments, each gate worker's results, the rows
    the collector's database holds, and how often the broker logged dropping messages."""

    segments: list[Segment]
    results: list[WorkerResult]
    stored: int
    broker_drops: int  # must stay 0

    def chosen(self, label: str) -> list[Segment]:
        return [s for s in self.segments if s.label == label]

    def rate(self, label: str) -> float:
        """Events settled per second over the segments of `label`."""
        return rate_of(self.segments, label)

    def cpu(self, label: str) -> dict[str, float]:
        """Each process's CPU, % of a core, over the segments of `label`."""
        chosen = self.chosen(label)
        return {name: sum(s.cpu[name] for s in chosen) / len(chosen) for name in chosen[0].cpu}

    def latencies(self, label: str) -> list[float]:
        """Seconds to the ack of the collector events published (or fallen due, when paced) in
        `label`'s measured parts."""
        windows = [(s.start, s.end) for s in self.chosen(label)]
        return [
            latency
            for result in self.results
            for published_at, latency in result.latencies
            if any(start <= published_at < end for start, end in windows)
        ]

    @property
    def published(self) -> int:
        return sum(r.published_collector for r in self.results)

    @property
    def lost(self) -> int:
        """Collector events never acked, plus any the database does not hold."""
        unacked = sum(r.unsettled_collector for r in self.results)
        return unacked + max(0, self.published - self.stored)


def rate_of(segments: Sequence[Segment], label: str) -> float:
    chosen = [s for s in segments if s.label == label]
    return sum(s.settled for s in chosen) / sum(s.end - s.start for s in chosen)


class Site:
    """A broker, the bare subscribers, the collector and the gate workers, all connected."""

    def __init__(
        self,
        broker: LocalBroker,
        gates: int,
        window: int,
        workdir: Path,
        baselines: Sequence[int] = tuple(BARE_PREFIXES),
        mqtt_client: str | None = None,
        db_url: str | None = None,
    ) -> None:
        """`baselines`: the bare subscribers to start (BARE, BARE_TUNED); `mqtt_client`: the
        collector's `--mqtt-client` (None: its default); `db_url`: the collector's database
        (None: a SQLite file in `workdir`)."""
        self.gates = gates
        self.window = window
        self._broker, self._workdir = broker, workdir
        context = multiprocessing.get_context("spawn")
        self.shared = Shared(
            mode=context.Value("i", IDLE),
            rate=context.Value("d", 0.0),
            gates=gates,
            received={mode: context.Array("q", gates, lock=False) for mode in BARE_PREFIXES},
            acked=context.Array("q", gates, lock=False),
            waiting=context.Array("q", WORKERS, lock=False),
        )
        self.db_url = db_url or f"sqlite:///{workdir / f'collector-{gates}.db'}"
        ready, stop = context.Semaphore(0), context.Event()
        self._stop = stop
        self._collector_id = f"bench-collector-{secrets.token_hex(3)}"
        index_of = {device: n for n, device in enumerate(device_ids(gates))}
        self.subscribers = {}
        for mode in baselines:
            subscriber = context.Process(
                target=run_bare_subscriber,
                args=(
                    mode,
                    broker.host,
                    broker.port,
                    index_of,
                    self.shared.received[mode],
                    ready,
                    stop,
                ),
            )
            subscriber.start()
            if not ready.acquire(timeout=60):
                raise RuntimeError("a bare subscriber did not subscribe")
            self.subscribers[mode] = subscriber
        self.collector = self._start_collector(mqtt_client)
        self._results: Any = context.Queue()
        token = secrets.token_hex(3)
        self.workers = []
        for worker_number, (first, ids) in enumerate(split(device_ids(gates), WORKERS)):
            plan = WorkerPlan(
                broker.host, broker.port, ids, first, self.window, token, worker_number
            )
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
            **{f"bare {SUBSCRIBER_NAMES[m]}": p.pid or 0 for m, p in self.subscribers.items()},
            "collector": self.collector.process.pid,
            **{f"gates {n + 1}": w.pid or 0 for n, w in enumerate(self.workers)},
        }

    def _start_collector(self, mqtt_client: str | None) -> CollectorProcess:
        return CollectorProcess(
            broker_url=self._broker.url,
            db_url=self.db_url,
            log_path=self._workdir / f"collector-{self.gates}.log",
            client_id=self._collector_id,  # one session: what comes while swapping is kept
            username="",
            mqtt_client=mqtt_client,
        ).wait_until_subscribed(60)

    def drain(self, timeout: float = 120.0) -> float:
        """Let nothing new fall due (PACED at rate 0) and wait until every collector event due
        or sent is acked, so the next segment starts from nothing; the seconds it took."""
        started = time.monotonic()
        self.shared.rate.value = 0.0
        self.shared.mode.value = PACED
        time.sleep(2 * WAITING_EVERY_S)  # every worker has counted since
        while sum(self.shared.waiting):
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{sum(self.shared.waiting)} events still unacked")
            time.sleep(WAITING_EVERY_S)
        self.shared.mode.value = IDLE
        return time.monotonic() - started

    def swap_collector(self, mqtt_client: str) -> None:
        """Stop the collector (everything it received committed and acked first) and start
        another on `mqtt_client`, with a session of its own, on the same database."""
        self.shared.mode.value = IDLE
        self.collector.stop()
        self.collector = self._start_collector(mqtt_client)
        self.pids["collector"] = self.collector.process.pid

    def settled(self, mode: int) -> int:
        """Events settled so far in `mode`, all gates: counted by that baseline's subscriber, or
        (COLLECTOR, PACED) acked back to the gates."""
        counts = self.shared.received.get(mode, self.shared.acked)
        return sum(counts)

    def segment(
        self, mode: int, label: str, seconds: float, settle_s: float, rate: float = 0.0
    ) -> Segment:
        self.shared.rate.value = rate
        self.shared.mode.value = mode
        time.sleep(settle_s)  # the other side drains meanwhile: not measured
        cpu_before = self.cpu_now()
        start, before = time.monotonic(), self.settled(mode)
        time.sleep(max(0.0, seconds - settle_s))  # the measured part itself
        end, after = time.monotonic(), self.settled(mode)
        cpu_after = self.cpu_now()
        used = {name: cpu_after[name] - cpu_before[name] for name in cpu_before}
        cpu = {name: 100 * seconds_used / (end - start) for name, seconds_used in used.items()}
        return Segment(mode, label, start, end, after - before, cpu)

    def cpu_now(self) -> dict[str, float]:
        """CPU seconds used so far by each process measured (`pids`)."""
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

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
        return results, count_entries(self.db_url), self._last_log_line

    def close(self) -> None:
        self._stop.set()
        for process in [*self.workers, *self.subscribers.values()]:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        self.collector.stop()
        self._last_log_line = self.collector.last_log_line()


def count_entries(db_url: str) -> int:
    """The rows of the collector's `entries` table."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(text("SELECT count(*) FROM entries")) or 0)
    finally:
        engine.dispose()
