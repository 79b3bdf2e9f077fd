"""The frame loop while the gate flushes a backlog: does publishing starve scanning?

    python -m bench.flush_bench [--quick] [--events 5000] [--backend auto]

A gate that was offline holds thousands of journaled events. When the broker comes back it
sends them all (uplink sender thread, at most 100 in flight, each acknowledged by the collector
after its commit, each ack applied to the journal) while its camera keeps delivering frames.

The run, on real parts: a real Mosquitto (gatescan.testing.broker.LocalBroker), the real collector
process (`gatescan collector`, SQLite), and the agent as `build_agent` wires it (pins on
MockFactory, systemd notify off), its journal filled beforehand with N events of its own. Its
camera hands 1280x720 frames at 30 fps; each frame is a different room
(gatescan/testing/gate_frames.py), so every frame is decoded, the most the frame loop ever has to
do without a code in view.

Phase 1, flush: from the agent's start until its outbox is empty. Phase 2, no flush: as long
again (at least 5 s), same agent, same camera. Per phase: frames per second the loop took,
frames dropped (a newer frame came before the decode thread was free), the decode time, and the
99th percentile of a frame's age when the decode thread took it (the handoff's wait: grows when
the decode thread cannot get the CPU or the interpreter lock).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

try:
    import bench  # noqa: F401
except ImportError:  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpiozero.pins.mock import MockFactory

from bench.figures import Figure, bench_main
from bench.pipeline_rig import distinct_cards
from device.app import Agent, build_agent
from device.camera.memory import MemorySource
from device.frames.stats import StatsSnapshot
from device.journal.journal import Journal
from device.system.clock import SystemClock
from device.system.systemd_notify import SystemdNotifier
from device.verdict.credentials import parse_credential
from device.verdict.events import EventBuilder
from device.verdict.policy import Policy
from firmware_config.schema import DecoderConfig, GateConfig, MqttConfig
from gatescan.testing.broker import LocalBroker
from gatescan.testing.collector_process import CollectorProcess
from gatescan.testing.gate_frames import empty_set
from protocol.verdicts import Direction

DEVICE_ID = "gate-flush-bench"
FPS = 30.0
GOAL_FPS_RATIO = 0.95
MIN_CALM_S = 5.0
POLL_S = 0.1


@dataclass(frozen=True)
class Phase:
    seconds: float
    stats: StatsSnapshot
    cpu_percent: float  # the agent's process (this one), of one core


@dataclass(frozen=True)
class FlushRun:
    events: int
    flush: Phase
    calm: Phase
    backend: str


def fill_journal(data_dir: Path, count: int) -> None:
    """`count` events of this gate in its outbox, as after an outage."""
    builder = EventBuilder(
        device_id=DEVICE_ID,
        site_id="bench",
        direction=Direction.IN,
        boot_id="before-the-outage",
        clock=SystemClock(),
    )
    policy = Policy("log")
    with Journal(data_dir) as journal:
        for payload in distinct_cards(count):
            parsed = parse_credential(payload)
            journal.record(builder.build(parsed, policy.decide(parsed)))


def build_bench_agent(broker: LocalBroker, data_dir: Path, backend: str) -> Agent:
    config = GateConfig(
        device_id=DEVICE_ID,
        site_id="bench",
        data_dir=data_dir,
        decoder=DecoderConfig.model_validate({"backend": backend}),
        # Telemetry would reset the loop's counters that the phases read.
        mqtt=MqttConfig(broker=broker.url, telemetry_interval=3600),
    )
    frames = [gate.frame for gate in empty_set(8)]
    return build_agent(
        config,
        pin_factory=MockFactory(),
        notifier=SystemdNotifier(None),
        source=MemorySource(frames, fps=FPS),
    )


def run(events: int, backend: str, workdir: Path) -> FlushRun:
    data_dir = workdir / "gate"
    fill_journal(data_dir, events)
    with LocalBroker(workdir=workdir / "broker") as broker:
        collector = CollectorProcess(
            broker_url=broker.url,
            db_url=f"sqlite:///{workdir / 'collector.db'}",
            log_path=workdir / "collector.log",
            client_id="bench-collector",
            username="",
        ).wait_until_subscribed(60)
        try:
            agent = build_bench_agent(broker, data_dir, backend)
            stop = threading.Event()
            running = threading.Thread(target=agent.run, args=(stop,), name="agent")
            started = time.monotonic()
            agent.scanner.stats.snapshot()
            cpu_started = time.process_time()
            running.start()
            try:
                flush = measure_flush(agent, started, cpu_started, events)
                calm = measure_calm(agent, max(MIN_CALM_S, flush.seconds))
            finally:
                stop.set()
                running.join(timeout=60)
        finally:
            collector.stop()
    return FlushRun(events, flush, calm, agent.scanner.decoder.name)


def measure_flush(agent: Agent, started: float, cpu_started: float, events: int) -> Phase:
    deadline = started + 120 + events / 50
    while agent.journal.outbox_depth() > 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{agent.journal.outbox_depth()} events still unsent")
        time.sleep(POLL_S)  # the outbox to poll: the bench is not the uplink's listener
    return phase_since(agent, started, cpu_started)


def measure_calm(agent: Agent, seconds: float) -> Phase:
    started, cpu_started = time.monotonic(), time.process_time()
    time.sleep(seconds)  # the phase's length: nothing to wait for but time
    return phase_since(agent, started, cpu_started)


def phase_since(agent: Agent, started: float, cpu_started: float) -> Phase:
    seconds = time.monotonic() - started
    cpu = 100 * (time.process_time() - cpu_started) / seconds
    return Phase(seconds, agent.scanner.stats.snapshot(), cpu)


def measure(quick: bool = False, backend: str = "auto", events: int | None = None) -> list[Figure]:
    count = events or (1000 if quick else 5000)
    with tempfile.TemporaryDirectory(prefix="gatescan-flush-") as tmp:
        result = run(count, backend, Path(tmp))
    flush, calm = result.flush, result.calm

    def how(phase: Phase) -> str:
        stats = phase.stats
        return (
            f"{stats.dropped} frames dropped, decode p50 {stats.decode_ms:.1f} ms, frame age at "
            f"decode p99 {stats.age_p99_ms:.1f} ms, agent CPU {phase.cpu_percent:.0f}% of a "
            f"core, over {phase.seconds:.1f} s"
        )

    rate = result.events / flush.seconds
    return [
        Figure(
            "pipeline",
            f"frame loop during a {result.events:,}-event flush",
            flush.stats.fps,
            "frames/s",
            note=f"camera at 30 fps, every frame decoded ({result.backend}); {how(flush)}",
        ),
        Figure(
            "pipeline",
            "frame loop with no flush, same run",
            calm.stats.fps,
            "frames/s",
            note=how(calm),
        ),
        Figure(
            "pipeline",
            "frame loop fps, flush / no flush",
            flush.stats.fps / calm.stats.fps,
            "ratio",
            at_least=GOAL_FPS_RATIO,
            note=f"flush: {rate:.0f} events/s to a real Mosquitto + collector, all acknowledged",
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(argv, __doc__, "bench.flush_bench", measure, ("events", int))


if __name__ == "__main__":
    sys.exit(main())
