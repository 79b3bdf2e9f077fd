"""The ingest benchmark's site: one Mosquitto, a bare paho subscriber, the collector process and
the simulated gates' worker processes, all connected at once (bench/ingest_bench.py drives it).

Also the Linux details it needs: the open-file limit for hundreds of clients, and CPU seconds
per process from /proc.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import secrets
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench.ingest_gates import (
    BARE,
    BARE_PREFIX,
    DONE,
    IDLE,
    Shared,
    WorkerPlan,
    WorkerResult,
    run_worker,
)
from gatescan.testing.broker import LocalBroker
from gatescan.testing.collector_process import CollectorProcess

WORKERS = 2  # simulator processes, one per core
PROJECT_ROOT = Path(__file__).resolve().parents[1]
SITE_CONFIG = PROJECT_ROOT / "deploy" / "mosquitto" / "gatescan.conf"
# The site broker's settings that matter for ingest (its listener, users and files do not).
SITE_OPTIONS = (
    "max_queued_messages",
    "max_packet_size",
    "max_inflight_messages",
    "set_tcp_nodelay",
)


def site_broker_config() -> str:
    """SITE_OPTIONS as deploy/mosquitto/gatescan.conf sets them, for the bench's own broker."""
    lines = SITE_CONFIG.read_text(encoding="utf-8").splitlines()
    chosen = [line for line in lines if line.split(" ", 1)[0] in SITE_OPTIONS]
    if len(chosen) != len(SITE_OPTIONS):
        raise RuntimeError(f"{SITE_CONFIG} no longer sets each of {', '.join(SITE_OPTIONS)}")
    return "\n".join(chosen) + "\n"


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


@dataclass
class Segment:
    mode: int
    label: str  # "bare", "collector", "paced 0.75", ...
    start: float  # of the measured part (monotonic)
    end: float
    settled: int  # events settled in the measured part
    cpu: dict[str, float]  # process -> % of one core in the measured part


class Site:
    """A broker, the bare subscriber, the collector and the gate workers, all connected."""

    def __init__(self, broker: LocalBroker, gates: int, window: int, workdir: Path) -> None:
        self.gates = gates
        self.window = window
        context = multiprocessing.get_context("spawn")
        self.shared = Shared(
            mode=context.Value("i", IDLE),
            rate=context.Value("d", 0.0),
            gates=gates,
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
        self.collector = CollectorProcess(
            broker_url=broker.url,
            db_url=f"sqlite:///{self.db}",
            log_path=workdir / f"collector-{gates}.log",
            client_id=f"bench-collector-{secrets.token_hex(3)}",
            username="",
        ).wait_until_subscribed(60)
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

    def segment(
        self, mode: int, label: str, seconds: float, settle_s: float, rate: float = 0.0
    ) -> Segment:
        self.shared.rate.value = rate
        self.shared.mode.value = mode
        time.sleep(settle_s)  # the other side drains meanwhile: not measured
        cpu_before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        start, before = time.monotonic(), self.settled()
        time.sleep(max(0.0, seconds - settle_s))  # the measured part itself
        end, after = time.monotonic(), self.settled()
        used = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in self.pids.items()}
        side = 0 if mode == BARE else 1  # COLLECTOR and PACED: acked events
        cpu = {name: 100 * seconds_used / (end - start) for name, seconds_used in used.items()}
        return Segment(mode, label, start, end, after[side] - before[side], cpu)

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
        self.collector.stop()
        self._last_log_line = self.collector.last_log_line()
