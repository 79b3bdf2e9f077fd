"""Real parts for the fault scenarios: the gate agent and the collector as processes, the codes a
gate is shown, its journal and the collector's database as the test reads them, and waits.

Nothing here fakes a part of the system: the agent is `python -m gatescan.cli agent`, the
collector is `python -m gatescan.cli collector`, the broker is Mosquitto (gatescan.testing.broker's
LocalBroker), the journal and database are the real files. A process writes its output to a log
file, not a pipe, so a chatty process never blocks and a test can read its log while it runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import cv2
import paho.mqtt.client as mqtt

from device.decode.backends import make_decoder
from device.journal.journal import Journal
from device.journal.outbox import PendingEvent
from gatescan.testing.broker import LocalBroker
from gatescan.testing.samples import blank_frame, cccd_payload, render_code, sample_cards
from protocol.messages import Event, Status
from protocol.topics import Topic, device_topic
from server.store.database import Store, StoredEntry
from tests.support.paths import PROJECT_ROOT
from tests.support.waiting import wait_until

FRAME_SIZE = (200, 200)  # small frames: hundreds of codes decode and replay in seconds
MODULE_PX = 4
STOP_TIMEOUT_S = 20.0

# --- what the gate is shown ----------------------------------------------------------------------


def distinct_cards(count: int, batch: int = 0) -> list[bytes]:
    """`count` ID-card codes no other call with another `batch` repeats (batch < 1000, count <=
    8000). Each number keeps its person's first six digits (province, century/gender, birth
    year), which the gate checks against the card's date of birth and gender."""
    people = sample_cards()
    cards = []
    for index in range(count):
        person = people[index % len(people)]
        id12 = f"{person.id12[:6]}{batch:03d}{index // len(people):03d}"
        cards.append(
            cccd_payload(id12, person.name, person.dob, person.gender, "Huế", person.issued)
        )
    return cards


def write_frames(folder: Path, payloads: Sequence[bytes | None], lead_in: int = 0) -> Path:
    """A replay folder: `lead_in` empty frames, then one image per payload (None: nothing in
    view). Every code is decoded once here with the gate's own decoder, so a code the test counts
    as shown is one the gate can read."""
    decoder = make_decoder("pyzbar")
    folder.mkdir(parents=True, exist_ok=True)
    empty = cv2.imencode(".png", blank_frame(FRAME_SIZE))[1].tobytes()
    images = [None] * lead_in + list(payloads)
    for index, payload in enumerate(images, start=1):
        png = empty
        if payload is not None:
            frame = render_code(payload, frame_size=FRAME_SIZE, module_px=MODULE_PX)
            decoded = [code.data for code in decoder.decode(frame)]
            if decoded != [payload]:
                raise ValueError(f"frame {index} does not decode to its payload: {decoded!r}")
            png = cv2.imencode(".png", frame)[1].tobytes()
        (folder / f"{index:05d}.png").write_bytes(png)
    return folder


def code_hash(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


# --- the gate's config ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GateSettings:
    """The parts of a gate config the scenarios vary; everything else stays at its default."""

    replay: Path
    fps: float = 50.0
    hold: float = 0.04
    keepalive: int = 15
    resend_after: float = 10.0
    telemetry_interval: float = 30.0


def write_gate_config(path: Path, settings: GateSettings) -> Path:
    path.write_text(
        "[camera]\n"
        'type = "replay"\n'
        f'folder = "{settings.replay}"\n'
        f"fps = {settings.fps}\n"
        f"hold = {settings.hold}\n"
        "[mqtt]\n"
        f"keepalive = {settings.keepalive}\n"
        f"resend_after = {settings.resend_after}\n"
        f"telemetry_interval = {settings.telemetry_interval}\n"
        "[indicator]\n"
        "enabled = true\n",
        encoding="utf-8",
    )
    return path


# --- processes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    at: float | None  # the process's own timestamp (epoch seconds), when the line has one
    text: str


def _line_time(line: str) -> float | None:
    # logging's default asctime, "2026-11-26 08:00:00,123", in local time
    try:
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return None


class LoggedProcess:
    """A child process whose stdout and stderr go, in order, to one log file."""

    def __init__(self, command: Sequence[str], log_path: Path) -> None:
        self.command = list(command)
        self.log_path = log_path
        self.started_at = time.time()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:  # a restart appends to the same log
            self.process = subprocess.Popen(
                self.command,
                cwd=PROJECT_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    @property
    def name(self) -> str:
        return self.log_path.stem

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_lines(self) -> list[LogLine]:
        return [LogLine(_line_time(line), line) for line in self.log_text().splitlines()]

    def count(self, text: str) -> int:
        return sum(text in line.text for line in self.log_lines())

    def wait_for_log(self, text: str, timeout: float, *, occurrence: int = 1) -> LogLine:
        """The `occurrence`-th line holding `text` (counted over the whole log file)."""

        def found() -> LogLine | None:
            if not self.running():
                raise AssertionError(f"{self.name} exited:\n{self.log_text()[-3000:]}")
            lines = [line for line in self.log_lines() if text in line.text]
            return lines[occurrence - 1] if len(lines) >= occurrence else None

        return wait_until(found, timeout, f"{text!r} (#{occurrence}) in {self.log_path.name}")

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or closed; the kernel frees the flock."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> int:
        """SIGTERM, as systemd stops a service; wait for the clean exit and return its code."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.name} ignored SIGTERM:\n{self.log_text()[-3000:]}"
            ) from None


def start_agent(
    config: Path, *, broker_url: str, device_id: str, data_dir: Path, log_path: Path
) -> LoggedProcess:
    """`python -m gatescan.cli agent`, the gate as systemd runs it."""
    return LoggedProcess(
        [sys.executable, "-m", "gatescan.cli", "agent", "--config", str(config),
         "--broker", broker_url, "--device-id", device_id, "--data-dir", str(data_dir)],
        log_path,
    )  # fmt: skip


def start_collector(broker_url: str, db: Path, log_path: Path, client_id: str) -> LoggedProcess:
    return LoggedProcess(
        [sys.executable, "-m", "gatescan.cli", "collector", "--broker", broker_url,
         "--db", f"sqlite:///{db}", "--client-id", client_id],
        log_path,
    )  # fmt: skip


# --- the gate's journal --------------------------------------------------------------------------


@dataclass(frozen=True)
class JournalContents:
    history: list[Event]  # every event the gate journaled, lowest seq first
    outbox: list[PendingEvent]  # those not acknowledged by the collector


def read_journal(data_dir: Path, since: date) -> JournalContents:
    """The journal of a stopped agent (it holds the journal's lock while it runs): the history of
    every UTC day from `since` to today, and the outbox."""
    days = [since + timedelta(days=n) for n in range((today() - since).days + 1)]
    with Journal(data_dir) as journal:
        history = [event for day in days for event in journal.history(day)]
        outbox = journal.pending()
    return JournalContents(history=sorted(history, key=lambda e: e.seq), outbox=outbox)


def snapshot_journal(data_dir: Path, into: Path, since: date) -> JournalContents:
    """The journal of a running agent, read from a copy (empty before the agent made one). The
    copy reads as the journal would after a kill at that moment: its reader drops a last line
    that an append had not finished, and opening it repairs what lies between two files."""
    if not (data_dir / "journal").is_dir():
        return JournalContents(history=[], outbox=[])
    shutil.rmtree(into, ignore_errors=True)
    shutil.copytree(
        data_dir / "journal",
        into / "journal",
        ignore=shutil.ignore_patterns("lock"),
        copy_function=_copy_if_still_there,
    )
    return read_journal(into, since)


def _copy_if_still_there(source: str, target: str) -> None:
    # A compaction's temp file listed a moment ago may have been renamed over its file since.
    with contextlib.suppress(FileNotFoundError):
        shutil.copy2(source, target)


def today() -> date:
    return datetime.now(UTC).date()


# --- the tally: the gate's journal against the collector's database ------------------------------


@dataclass(frozen=True)
class Tally:
    """One scenario's outcome: the columns of docs/reliability.md."""

    shown: int  # events the gate journaled (it lit the indicator for each before journaling)
    stored: int  # distinct events in the collector's database
    duplicates: int  # stored rows beyond one per event_id, or beyond one per code shown once
    lost: int  # journaled events the database does not hold
    invented: int  # stored events the gate never journaled (must be 0)


def tally(journaled: Iterable[Event], stored: Iterable[StoredEntry]) -> Tally:
    """Compare the gate's history with the database. Each code in these scenarios is shown once,
    so a second row with the same code hash is a duplicate even under a fresh event_id."""
    journal_ids = [event.event_id for event in journaled]
    rows = list(stored)
    stored_ids = [row.event_id for row in rows]
    id_duplicates = len(stored_ids) - len(set(stored_ids))
    code_duplicates = len(rows) - len({row.code_sha256 for row in rows})
    return Tally(
        shown=len(set(journal_ids)),
        stored=len(set(stored_ids)),
        duplicates=max(id_duplicates, code_duplicates),
        lost=len(set(journal_ids) - set(stored_ids)),
        invented=len(set(stored_ids) - set(journal_ids)),
    )


def last_received_at(rows: Iterable[StoredEntry]) -> float:
    """When the collector stored the last of these rows (epoch seconds)."""
    return max(row.received_at for row in rows).timestamp()


# --- one site per scenario -----------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """What docs/reliability.md shows for a scenario (conftest's `record_figures` writes it)."""

    scenario: str  # "1", "6b", ...
    title: str
    tally: Tally
    recover_s: float | None  # from the end of the fault to the last event stored
    notes: str = ""


class Site:
    """A broker, the collector's database, one gate's data dir, and every process started for
    them; `close()` kills whatever is still running (only processes this site started)."""

    def __init__(self, root: Path, broker: LocalBroker, device_id: str = "gate-fault-01") -> None:
        self.root = root
        self.broker = broker
        self.device_id = device_id
        self.db = root / "collector.db"
        self.data_dir = root / "gate"
        self.since = today()
        self.store = Store(f"sqlite:///{self.db}")
        self.processes: list[LoggedProcess] = []
        self._probes = 0

    def start_collector(self, client_id: str = "fault-collector") -> LoggedProcess:
        """The collector process, returned once its subscriptions are in place (a probe status
        message reached its database), so the broker keeps its session from then on."""
        collector = start_collector(
            self.broker.url, self.db, self.root / "logs" / "collector.log", client_id
        )
        self.processes.append(collector)
        self._wait_until_subscribed(collector)
        return collector

    def start_agent(
        self,
        settings: GateSettings,
        *,
        broker_url: str | None = None,
        log_name: str = "agent",
    ) -> LoggedProcess:
        config = write_gate_config(self.root / f"{log_name}.toml", settings)
        agent = start_agent(
            config,
            broker_url=broker_url or self.broker.url,
            device_id=self.device_id,
            data_dir=self.data_dir,
            log_path=self.root / "logs" / f"{log_name}.log",
        )
        self.processes.append(agent)
        return agent

    def stored(self) -> list[StoredEntry]:
        return list(self.store.entries(device_id=self.device_id))

    def stored_count(self) -> int:
        return self.store.count_entries()

    def journal(self) -> JournalContents:
        """The gate's journal; the agent must have stopped."""
        return read_journal(self.data_dir, self.since)

    def journal_now(self) -> JournalContents:
        """The gate's journal while the agent runs (from a copy)."""
        return snapshot_journal(self.data_dir, self.root / "journal-copy", self.since)

    def wait_until_delivered(self, count: int, timeout: float) -> None:
        """Until the database holds `count` entries and the running gate's outbox is empty (its
        acks arrived); the database first, since reading it is cheaper than copying the journal."""
        wait_until(lambda: self.stored_count() >= count, timeout, f"{count} events stored")
        wait_until(lambda: not self.journal_now().outbox, timeout, "the outbox to empty", 0.5)

    def close(self) -> None:
        for process in self.processes:
            if process.running():
                process.kill()
        self.store.close()

    def _wait_until_subscribed(self, collector: LoggedProcess, timeout: float = 30) -> None:
        self._probes += 1
        probe_id = f"probe-{self._probes}"
        topic = device_topic(probe_id, Topic.STATUS)
        payload = Status(state="online", version="probe").to_json()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()

        def probe_stored() -> bool:
            if not collector.running():
                raise AssertionError(f"the collector exited:\n{collector.log_text()[-3000:]}")
            client.publish(topic, payload, qos=1)  # lost until the collector subscribes
            return any(device.device_id == probe_id for device in self.store.devices())

        try:
            wait_until(probe_stored, timeout, "the collector to subscribe", interval=0.2)
        finally:
            client.loop_stop()
            client.disconnect()
