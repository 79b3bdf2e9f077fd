"""The frame loop while the gate flushes a large backlog: does publishing starve scanning?

    python -m bench.flush_bench [--quick] [--events 150000] [--backend auto]

A gate that was offline holds many journaled events. When the broker comes back it sends them
all (uplink sender thread, at most 100 in flight, each acknowledged by the collector after its
commit, each ack applied to the journal) while its camera keeps delivering frames.

The run, on real parts: a real Mosquitto (gatescan.testing.broker.LocalBroker), the real collector
process (`gatescan collector`, SQLite), and the agent as `build_agent` wires it (pins on
MockFactory, systemd notify off), its journal filled beforehand with N events of its own. Its
camera hands 1280x720 frames, each a different room (gatescan/testing/gate_frames.py), so every
frame is decoded: the most the frame loop ever has to do without a code in view. Two cameras,
each with a backlog of its own (its own journal and device id), one after the other:

- 30 fps, as at a gate: frames paced like a sensor. A frame the decode thread is too busy to take
  is dropped; one the capture thread gets no CPU or interpreter lock to read is never made (the
  camera's schedule restarts). Either lowers the fps. The goal is on this comparison: a gate's
  camera gives 30 fps, and what a flush can cost a visitor is frames of it lost (a code seen late).
- uncapped: the same frames handed as fast as the frame loop takes them (the capture thread hands
  the next one when the decode thread has taken the last; none is dropped), so its fps is all the
  loop can do, and the CPU and interpreter time the flush takes from it shows in full. No goal:
  here Mosquitto and the collector share this machine's two cores with the gate (on a site they
  run on a server), and an uncapped loop loses throughput to any other work at all. It says how
  much headroom above 30 fps a flush leaves, for a slower board.

Per camera, phase 1, flush: from the agent's start until its outbox is empty. Phase 2, no flush:
the same agent and camera for CALM_S more. Per phase: frames per second the loop took, frames
dropped, the decode time, the 99th percentile of a frame's age when the decode thread took it
(the handoff's wait: grows when the decode thread cannot get the CPU or the interpreter lock), and
the longest time between two camera reads (the capture thread kept waiting).

The backlog: N = 150,000 events per camera by default (about 42 hours of a lane at a code a
second), so that the flush at 30 fps lasts more than MIN_FLUSH_S here (8,000-12,000 events/s):
over one second at 30 fps a single frame is 3% of the figure. A flush shorter than MIN_FLUSH_S is
said so in its figure's note. Every event must be acknowledged, none set aside as rejected, and
all N stored by the collector: anything else fails the run.

The journals are filled through `Journal.record()`, one event at a time, before the broker starts.
Each record() fdatasyncs twice (0.2-1.5 ms on this VM's shared disk: most of the time it takes to
record 150,000 events), so while filling, and only then, fdatasync is skipped; one sync() at the
end makes it all durable before anything is measured (`durable_at_the_end`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

try:
    import bench  # noqa: F401
except ImportError:  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpiozero.pins.mock import MockFactory

from bench.figures import Figure, bench_main
from bench.pipeline_rig import distinct_cards
from device.app import Agent, build_agent
from device.camera.memory import MemorySource
from device.camera.source import Frame
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

FPS = 30.0
GOAL_FPS_RATIO = 0.95
FULL_EVENTS, QUICK_EVENTS = 150_000, 1_000
MIN_FLUSH_S = 10.0  # a full run's flush should last at least this (see the docstring)
CALM_S = {False: 10.0, True: 1.0}  # the phase with no flush, by `quick`
POLL_S = 0.1
STALL_S = 60.0  # no event acknowledged for this long: the flush is stuck
# The collector without its per-gate limits: what is measured is the frame loop under the
# fastest flush the uplink can make. A site's collector keeps a gate to 1,000 messages a second
# by default (server/collector/limits.py), a gentler flush than this (about 140 s for 150,000).
NO_GATE_LIMITS = ("--gate-max-messages-per-second", "0", "--gate-max-bytes-per-minute", "0")


class WatchedCamera(MemorySource):
    """Frames from memory that also notes the longest time between two reads: a capture thread
    kept from the CPU or the interpreter lock reads late, and its camera makes no frame meanwhile.
    """

    def __init__(self, frames: Sequence[Frame], *, pace: bool) -> None:
        super().__init__(frames, fps=FPS, pace=pace)
        self._last_read: float | None = None
        self._longest_gap = 0.0

    def read(self) -> Frame:
        frame = super().read()
        now = time.monotonic()
        if self._last_read is not None:
            self._longest_gap = max(self._longest_gap, now - self._last_read)
        self._last_read = now
        return frame

    def take_longest_gap(self) -> float:
        """The longest gap (s) since the last call; then start afresh."""
        longest, self._longest_gap = self._longest_gap, 0.0
        return longest


class UncappedCamera(WatchedCamera):
    """The frames, unpaced, each handed when the frame loop has taken the one before.

    `every_frame` makes the capture thread wait until the decode thread took each frame, as for
    a recording: no frame is dropped, and the loop's fps is all it can take."""

    every_frame = True

    def __init__(self, frames: Sequence[Frame]) -> None:
        super().__init__(frames, pace=False)


@dataclass(frozen=True)
class Camera:
    name: str  # as the figures say it
    device_id: str  # its gate's: each camera flushes a backlog of its own
    open: Callable[[Sequence[Frame]], WatchedCamera]
    goal: float | None  # on its fps ratio, flush / no flush
    why: str  # why the goal is on it, or not


CAMERA_30_FPS = Camera(
    "30 fps camera",
    "gate-flush-30fps",
    lambda frames: WatchedCamera(frames, pace=True),
    GOAL_FPS_RATIO,
    "the goal is on this one: a gate's camera gives 30 fps, and frames of it lost are what a "
    "flush costs a visitor",
)
UNCAPPED = Camera(
    "uncapped camera",
    "gate-flush-uncapped",
    UncappedCamera,
    None,
    "no goal: the CPU the flush takes from the loop, with Mosquitto and the collector on the "
    "same cores (on a site they run on a server)",
)
CAMERAS = (CAMERA_30_FPS, UNCAPPED)


@dataclass(frozen=True)
class Phase:
    seconds: float
    stats: StatsSnapshot
    cpu_percent: float  # the agent's process (this one), of one core
    longest_gap_s: float  # between two camera reads

    @property
    def frames(self) -> float:
        return self.stats.fps * self.seconds


@dataclass(frozen=True)
class CameraRun:
    camera: Camera
    flush: Phase
    calm: Phase
    backend: str  # the decoder's name

    @property
    def fps_ratio(self) -> float:
        return self.flush.stats.fps / self.calm.stats.fps

    @property
    def frames_lost(self) -> float:
        """Frames the loop took during the flush fewer than at its no-flush rate."""
        return self.calm.stats.fps * self.flush.seconds - self.flush.frames


@dataclass(frozen=True)
class FlushRun:
    events: int  # per camera
    runs: tuple[CameraRun, ...]

    def of(self, camera: Camera) -> CameraRun:
        return next(run for run in self.runs if run.camera == camera)


def fill_journal(data_dir: Path, device_id: str, count: int) -> None:
    """`count` events of this gate in its outbox, as after an outage."""
    builder = EventBuilder(
        device_id=device_id,
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


@contextlib.contextmanager
def durable_at_the_end() -> Iterator[None]:
    """Writes in the block skip fdatasync; one sync() at the end makes them all durable.

    Only for filling the backlogs, while nothing else runs in this process: the files are the
    journal's own, written by record() as always, and what matters to the flush is that they are
    on disk before it starts (no writeback of them during the measurement), not in which order."""
    with mock.patch.object(os, "fdatasync", lambda fd: None):
        yield
    os.sync()


def build_bench_agent(
    broker: LocalBroker, data_dir: Path, backend: str, camera: Camera
) -> tuple[Agent, WatchedCamera]:
    config = GateConfig(
        device_id=camera.device_id,
        site_id="bench",
        data_dir=data_dir,
        decoder=DecoderConfig.model_validate({"backend": backend}),
        # Telemetry would reset the loop's counters that the phases read.
        mqtt=MqttConfig(broker=broker.url, telemetry_interval=3600),
    )
    source = camera.open([gate.frame for gate in empty_set(8)])
    agent = build_agent(
        config, pin_factory=MockFactory(), notifier=SystemdNotifier(None), source=source
    )
    return agent, source


def run(events: int, backend: str, workdir: Path, calm_s: float) -> FlushRun:
    """Each camera's flush of `events` events, then `calm_s` without a flush."""
    with durable_at_the_end():
        for camera in CAMERAS:
            fill_journal(workdir / camera.device_id, camera.device_id, events)
    database = workdir / "collector.db"
    with LocalBroker(workdir=workdir / "broker") as broker:
        collector = CollectorProcess(
            broker_url=broker.url,
            db_url=f"sqlite:///{database}",
            log_path=workdir / "collector.log",
            client_id="bench-collector",
            username="",
            options=NO_GATE_LIMITS,
        ).wait_until_subscribed(60)
        try:
            runs = tuple(
                flush_then_calm(broker, workdir / camera.device_id, backend, camera, calm_s)
                for camera in CAMERAS
            )
        finally:
            collector.stop()
    for camera in CAMERAS:
        check_stored(database, camera.device_id, events)
    return FlushRun(events, runs)


def flush_then_calm(
    broker: LocalBroker, data_dir: Path, backend: str, camera: Camera, calm_s: float
) -> CameraRun:
    agent, source = build_bench_agent(broker, data_dir, backend, camera)
    stop = threading.Event()
    running = threading.Thread(target=agent.run, args=(stop,), name="agent")
    started, cpu_started = time.monotonic(), time.process_time()
    agent.scanner.stats.snapshot()  # the counters start with the agent
    running.start()
    try:
        wait_until_flushed(agent.journal, camera)
        flush = phase_since(agent, source, started, cpu_started)
        calm = measure_calm(agent, source, calm_s)
    finally:
        stop.set()
        running.join(timeout=60)
    return CameraRun(camera, flush, calm, agent.scanner.decoder.name)


def wait_until_flushed(journal: Journal, camera: Camera) -> None:
    """Until the outbox is empty (the bench is not the uplink's listener: it polls); raises if no
    event is acknowledged for STALL_S, or if any was set aside as rejected instead."""
    depth, progressed = journal.outbox_depth(), time.monotonic()
    while depth > 0:
        time.sleep(POLL_S)
        left = journal.outbox_depth()
        if left < depth:
            depth, progressed = left, time.monotonic()
        elif time.monotonic() - progressed > STALL_S:
            raise RuntimeError(f"{camera.name}: {left} events unsent, none acked for {STALL_S} s")
    rejected = journal.rejected_count()
    if rejected:
        raise RuntimeError(f"{camera.name}: {rejected} events rejected by the collector")


def check_stored(database: Path, device_id: str, events: int) -> None:
    """All `events` of the gate are in the collector's database, or the run fails."""
    with contextlib.closing(sqlite3.connect(database)) as conn:
        query = "SELECT count(*) FROM entries WHERE device_id = ?"
        stored = int(conn.execute(query, (device_id,)).fetchone()[0])
    if stored != events:
        raise RuntimeError(f"{device_id}: {stored} of {events} events stored by the collector")


def measure_calm(agent: Agent, source: WatchedCamera, seconds: float) -> Phase:
    started, cpu_started = time.monotonic(), time.process_time()
    time.sleep(seconds)  # the phase's length: nothing to wait for but time
    return phase_since(agent, source, started, cpu_started)


def phase_since(agent: Agent, source: WatchedCamera, started: float, cpu_started: float) -> Phase:
    seconds = time.monotonic() - started
    cpu = 100 * (time.process_time() - cpu_started) / seconds
    return Phase(seconds, agent.scanner.stats.snapshot(), cpu, source.take_longest_gap())


def measure(quick: bool = False, backend: str = "auto", events: int | None = None) -> list[Figure]:
    count = events or (QUICK_EVENTS if quick else FULL_EVENTS)
    with tempfile.TemporaryDirectory(prefix="gatescan-flush-") as tmp:
        result = run(count, backend, Path(tmp), CALM_S[quick])
    return [figure for camera in CAMERAS for figure in camera_figures(result, camera)]


def camera_figures(result: FlushRun, camera: Camera) -> list[Figure]:
    run = result.of(camera)
    flush = run.flush
    short = f"; shorter than {MIN_FLUSH_S:.0f} s" if flush.seconds < MIN_FLUSH_S else ""
    return [
        Figure(
            "pipeline",
            f"frame loop during a {result.events:,}-event flush, {camera.name}",
            flush.stats.fps,
            "frames/s",
            note=f"every frame decoded ({run.backend}); {how(flush)}{short}",
        ),
        Figure(
            "pipeline",
            f"frame loop with no flush, {camera.name}, same run",
            run.calm.stats.fps,
            "frames/s",
            note=how(run.calm),
        ),
        Figure(
            "pipeline",
            f"frame loop fps, flush / no flush, {camera.name}",
            run.fps_ratio,
            "ratio",
            at_least=camera.goal,
            note=f"{camera.why}; {run.frames_lost:.0f} frames fewer than at the no-flush rate; "
            f"flush: {result.events / flush.seconds:,.0f} events/s to a real Mosquitto + "
            f"collector, all {result.events:,} acknowledged and stored",
        ),
    ]


def how(phase: Phase) -> str:
    stats = phase.stats
    return (
        f"{stats.dropped} frames dropped, decode p50 {stats.decode_ms:.1f} ms, frame age at "
        f"decode p99 {stats.age_p99_ms:.1f} ms, longest wait between camera reads "
        f"{phase.longest_gap_s * 1000:.0f} ms, agent CPU {phase.cpu_percent:.0f}% of a core, "
        f"over {phase.seconds:.1f} s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(argv, __doc__, "bench.flush_bench", measure, ("events", int), decimals=3)


if __name__ == "__main__":
    sys.exit(main())
