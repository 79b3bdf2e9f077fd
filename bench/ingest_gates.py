"""Simulated gates for the ingest benchmark: many MQTT clients driven by one selector loop.

A worker process drives its share of the gates without a thread per client: one `selectors`
loop calls each client's `loop_read` when its socket is readable, and paho writes a publish at
once (no external loop is registered, so `publish()` calls `loop_write()`). The clients are the
collector's own paho subclass (server/collector/client.py: buffered reads), so that the simulator
takes as little of the two cores as it can, in both runs alike.

The parent process switches every gate between modes (a shared `mode` value):

- BARE and BARE_TUNED: publish to `baseline/v1/devices/{id}/events` (BARE) or
  `basetune/v1/devices/{id}/events` (BARE_TUNED), each taken only by its bare subscriber (stock
  paho; the collector's own client), keeping at most `window` events per gate not yet counted by
  the subscribers (shared memory, `received`: one array per subscriber, as two processes adding
  to one counter would lose counts).
- COLLECTOR: publish to `gatescan/v1/devices/{id}/events`, which only the collector takes,
  keeping at most `window` events per gate not yet acked: an event is settled when its
  application ack comes back to the gate (counted in `acked`, and timed from the publish).
- PACED: collector events fall due at a steady total rate (shared `rate`, events/s, shared
  among the workers by their number of gates) and go out round robin to the gates, each as soon
  as a gate has room in its `window`; an event is timed from when it fell due. The latency at a
  given load rather than at saturation; if the collector cannot keep up, events wait for room
  and their latency shows it. A rate of 0 in PACED mode makes nothing new fall due: the events
  already due go out as windows allow, so a segment's backlog drains before the next begins
  (`waiting` says how many of a worker's events are due or unacked).

The topic prefixes have the same length and the payloads are the same real protocol
Events (built once per gate by `gatescan.testing.samples.sample_event`, then given a fresh
event_id, made as a gate makes it (protocol/event_ids.py), the next seq and the time of the publish
by splicing bytes, so no time goes to pydantic during the run): the two modes put exactly the same
bytes on the wire. The collector validates every one of them in full.
"""

from __future__ import annotations

import json
import selectors
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gatescan.testing.samples import sample_event
from protocol.event_ids import new_event_id
from protocol.topics import PREFIX, Topic, device_topic
from server.collector.client import IngestClient

IDLE, BARE, BARE_TUNED, COLLECTOR, PACED, DONE = 0, 1, 2, 3, 4, 5
# Same length as gatescan's prefix, so every mode puts the same number of bytes on the wire.
BARE_PREFIXES = {
    BARE: "baseline" + PREFIX[len("gatescan") :],
    BARE_TUNED: "basetune" + PREFIX[len("gatescan") :],
}
_ID_SENTINEL = "E" * 24
_SEQ_SENTINEL = 987654321
_TS_SENTINEL = datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
CONNECT_TIMEOUT_S = 60.0
WAITING_EVERY_S = 0.05  # how often a worker updates its `waiting` count


def event_template(device_id: str) -> tuple[bytes, ...]:
    """A real Event's JSON cut around its event_id, seq and ts: (head, a, b, tail), to be joined
    as head + event_id + a + seq + b + ts + tail."""
    event = sample_event(
        event_id=_ID_SENTINEL,
        device_id=device_id,
        site_id="Bến xe Mỹ Đình",
        seq=_SEQ_SENTINEL,
        boot_id="6b7ea7a3-810e-4299-b27a-390d521f2cd4",
        ts=_TS_SENTINEL,
        subject_id="079203012345",
        subject_name="Nguyễn Thị Thu Uyên",
        code_sha256="9a" * 32,
        code_length=121,
    )
    payload = event.to_json()
    head, rest = payload.split(_ID_SENTINEL.encode())
    after_id, rest = rest.split(str(_SEQ_SENTINEL).encode())
    after_seq, tail = rest.split(_ts_text(_TS_SENTINEL))
    return head, after_id, after_seq, tail


def _ts_text(value: datetime) -> bytes:
    """`ts` as the protocol's JSON writes it (checked against it for the sentinel above)."""
    return f"{value:%Y-%m-%dT%H:%M:%S.%f}Z".encode()


def bare_topic(mode: int, device_id: str) -> str:
    return f"{BARE_PREFIXES[mode]}/{device_id}/{Topic.EVENTS.value}"


@dataclass(frozen=True)
class WorkerPlan:
    """What one worker process does (picklable: it crosses into the process)."""

    host: str
    port: int
    device_ids: tuple[str, ...]
    first_index: int  # of these gates in the shared arrays
    window: int  # events per gate not yet settled, in the current mode
    run_token: str  # makes client ids unique across runs
    worker: int  # this worker's place in `Shared.waiting`


@dataclass(frozen=True)
class Shared:
    """The parent's controls and the counts it reads (multiprocessing shared memory)."""

    mode: Any  # Value("i"): IDLE, BARE, BARE_TUNED, COLLECTOR, PACED or DONE (drain, exit)
    rate: Any  # Value("d"): total events/s in PACED mode
    gates: int  # in all the workers
    received: dict[int, Any]  # bare mode -> Array("q") per gate: events its subscriber counted
    acked: Any  # Array("q") per gate: collector events acked back to the gate
    waiting: Any  # Array("q") per worker: collector events fallen due or sent, not yet acked


@dataclass
class WorkerResult:
    published_bare: int = 0
    published_collector: int = 0
    acked: int = 0
    duplicate_acks: int = 0  # ids acked again, or never published: must stay 0 here
    unsettled_bare: int = 0  # after the drain timeout
    unsettled_collector: int = 0
    paced_behind: int = 0  # most paced events due and not yet sent (every window full)
    # (monotonic publish time, or when a paced event fell due; seconds to its ack)
    latencies: list[tuple[float, float]] = field(default_factory=list)


class SimulatedGate:
    """One gate: its client, its next event, and the events it is waiting on."""

    def __init__(self, plan: WorkerPlan, index: int, device_id: str) -> None:
        self.device_id = device_id
        self.index = index
        self.events_topic = device_topic(device_id, Topic.EVENTS)
        self.bare_topics = {mode: bare_topic(mode, device_id) for mode in BARE_PREFIXES}
        self._head, self._after_id, self._after_seq, self._tail = event_template(device_id)
        self.seq = 0
        self.pending: dict[str, float] = {}  # collector events: event_id -> published at
        self.published_bare = dict.fromkeys(BARE_PREFIXES, 0)
        self.published_collector = 0
        self.ready = False
        self.client = IngestClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"bench-{plan.run_token}-{device_id}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )

    def next_payload(self, ts: bytes) -> tuple[str, bytes]:
        """The next event, as a gate makes it: a new time-ordered id, the next seq, and `ts`
        (the time as the protocol writes it)."""
        self.seq += 1
        event_id = new_event_id()
        seq = str(self.seq).encode()
        parts = (self._head, event_id.encode(), self._after_id, seq, self._after_seq, ts)
        return event_id, b"".join((*parts, self._tail))


class GateWorker:
    """Drive `plan.device_ids` in the mode the parent sets, until it says DONE."""

    def __init__(self, plan: WorkerPlan, shared: Shared) -> None:
        self.plan = plan
        self.shared = shared
        self.gates = [
            SimulatedGate(plan, plan.first_index + n, device_id)
            for n, device_id in enumerate(plan.device_ids)
        ]
        self.result = WorkerResult()
        self._selector = selectors.DefaultSelector()
        self._last_misc = 0.0
        self._waiting_said = 0.0
        self._paced_since: float | None = None  # when PACED mode began here
        self._paced_due = 0  # events fallen due since
        self._paced_rate = 0.0
        self._due_at: deque[float] = deque()  # fallen due, not yet published: when
        self._next_gate = 0
        self._now = b""  # the time for events made in this pass of the loop (as JSON writes it)

    def connect(self) -> None:
        for gate in self.gates:
            gate.client.on_connect = self._on_connect
            gate.client.on_subscribe = self._on_subscribe
            gate.client.on_message = self._on_ack
            gate.client.user_data_set(gate)
            gate.client.connect(self.plan.host, self.plan.port, keepalive=300)
            sock = gate.client.socket()
            assert sock is not None, "connect() returned with no socket"
            self._selector.register(sock, selectors.EVENT_READ, gate)
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while not all(gate.ready for gate in self.gates):
            if time.monotonic() > deadline:
                missing = sum(not gate.ready for gate in self.gates)
                raise RuntimeError(f"{missing} simulated gates did not connect in time")
            self._read(0.05)

    def _on_connect(self, client: Any, gate: SimulatedGate, *_args: Any) -> None:
        client.subscribe(device_topic(gate.device_id, Topic.ACK), qos=1)

    def _on_subscribe(self, _client: Any, gate: SimulatedGate, *_args: Any) -> None:
        gate.ready = True

    def run(self, drain_timeout: float) -> WorkerResult:
        """Publish in the parent's mode until DONE, then wait for every event to settle."""
        mode = self.shared.mode
        while (current := mode.value) != DONE:
            self._now = _ts_text(datetime.now(UTC))  # once per pass: a pass takes a few ms
            if current in BARE_PREFIXES:
                self._fill_bare(current)
            elif current == COLLECTOR:
                self._fill_collector()
            if current == PACED:
                self._publish_paced()
            else:
                self._paced_since = None
            self._read(0.002)
            self._say_waiting()
        deadline = time.monotonic() + drain_timeout
        while (self._unsettled_bare() or self._unsettled_collector()) and (
            time.monotonic() < deadline
        ):
            self._read(0.01)
        result = self.result
        result.unsettled_bare = self._unsettled_bare()
        result.unsettled_collector = self._unsettled_collector()
        result.published_bare = sum(sum(gate.published_bare.values()) for gate in self.gates)
        result.published_collector = sum(gate.published_collector for gate in self.gates)
        return result

    def close(self) -> None:
        for gate in self.gates:
            gate.client.disconnect()
        self._selector.close()

    def _fill_collector(self) -> None:
        window = self.plan.window
        for gate in self.gates:
            while len(gate.pending) < window:
                self._publish_collector(gate)

    def _publish_paced(self) -> None:
        """Events fall due at this worker's share of the rate; each goes out as soon as a gate
        has room in its window, and is timed from when it fell due (a gate journals a scan at
        once and sends it when it may, so waiting for room is part of its latency)."""
        now = time.monotonic()
        rate = self.shared.rate.value
        if self._paced_since is None or rate != self._paced_rate:  # a new paced segment
            self._paced_since, self._paced_due, self._paced_rate = now, 0, rate
        share = rate * len(self.gates) / self.shared.gates
        due = int((now - self._paced_since) * share)
        self._due_at.extend(
            self._paced_since + (k + 1) / share for k in range(self._paced_due, due)
        )
        self._paced_due = max(self._paced_due, due)
        self.result.paced_behind = max(self.result.paced_behind, len(self._due_at))
        count = len(self.gates)
        while self._due_at:
            for _ in range(count):  # round robin, to the next gate with room
                gate = self.gates[self._next_gate]
                self._next_gate = (self._next_gate + 1) % count
                if len(gate.pending) < self.plan.window:
                    self._publish_collector(gate, self._due_at.popleft())
                    break
            else:
                return  # every window is full: the collector is behind

    def _publish_collector(self, gate: SimulatedGate, due_at: float | None = None) -> None:
        event_id, payload = gate.next_payload(self._now)
        gate.pending[event_id] = time.monotonic() if due_at is None else due_at
        gate.client.publish(gate.events_topic, payload, qos=1)
        gate.published_collector += 1

    def _fill_bare(self, mode: int) -> None:
        window = self.plan.window
        for gate in self.gates:
            topic = gate.bare_topics[mode]
            while self._bare_in_flight(gate) < window:
                gate.client.publish(topic, gate.next_payload(self._now)[1], qos=1)
                gate.published_bare[mode] += 1

    def _bare_in_flight(self, gate: SimulatedGate) -> int:
        """Bare events of `gate` not yet counted, on either baseline (a window spans both)."""
        received = self.shared.received
        return sum(sent - received[m][gate.index] for m, sent in gate.published_bare.items())

    def _read(self, timeout: float) -> None:
        for key, _mask in self._selector.select(timeout):
            key.data.client.loop_read()
        for gate in self.gates:
            if gate.client.want_write():
                gate.client.loop_write()
        now = time.monotonic()
        if now - self._last_misc >= 1.0:  # keepalive pings
            self._last_misc = now
            for gate in self.gates:
                gate.client.loop_misc()

    def _on_ack(self, _client: Any, gate: SimulatedGate, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        result = self.result
        settled = 0
        for event_id in json.loads(message.payload)["event_ids"]:
            published_at = gate.pending.pop(event_id, None)
            if published_at is None:
                result.duplicate_acks += 1
                continue
            settled += 1
            result.latencies.append((published_at, now - published_at))
        result.acked += settled
        self.shared.acked[gate.index] += settled

    def _say_waiting(self) -> None:
        now = time.monotonic()
        if now - self._waiting_said >= WAITING_EVERY_S:
            self._waiting_said = now
            waiting = len(self._due_at) + self._unsettled_collector()
            self.shared.waiting[self.plan.worker] = waiting

    def _unsettled_collector(self) -> int:
        return sum(len(gate.pending) for gate in self.gates)

    def _unsettled_bare(self) -> int:
        return sum(self._bare_in_flight(gate) for gate in self.gates)


def run_worker(
    plan: WorkerPlan, shared: Shared, ready: Any, results: Any, drain_timeout: float
) -> None:
    """A worker process's body: connect, say so, run the parent's modes, send the result."""
    worker = GateWorker(plan, shared)
    try:
        worker.connect()
        ready.release()
        results.put(worker.run(drain_timeout))
    except BaseException as error:
        results.put(error)
        raise
    finally:
        worker.close()
