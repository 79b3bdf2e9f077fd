"""Real parts for the fault scenarios: the gate agent and the collector as processes, the codes a
gate is shown, its journal and the collector's database as the test reads them, and waits.

Nothing here fakes a part of the system: the agent is `python -m gatescan.cli agent`, the
collector is `python -m gatescan.cli collector`, the broker is Mosquitto (gatescan.testing.broker's
LocalBroker), the journal and database are the real files. A process writes its output to a log
file, not a pipe, so a chatty process never blocks and a test can read its log while it runs.

What a gate showed is counted from outside it where it matters: from the changes of its indicator
pins, which the agent writes to a file a test names (GATESCAN_FAULT_PIN_LOG,
device/indicator/pin_log.py), and compared with the collector's database (`tally_lit`), so a
showing the gate lit and then lost, even from its own journal, is counted lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import cv2
import paho.mqtt.client as mqtt

from device.decode.backends import make_decoder
from device.indicator.pin_log import PinChange, read_pin_log
from device.journal.journal import Journal
from device.journal.outbox import PendingEvent
from device.system.clock import FAULT_CLOCK_ENV
from firmware_config.schema import IndicatorConfig
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
    """A child process whose stdout and stderr go, in order, to one log file; its environment is
    the test's, plus `env`."""

    def __init__(
        self, command: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
    ) -> None:
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
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
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
    config: Path,
    *,
    broker_url: str,
    device_id: str,
    data_dir: Path,
    log_path: Path,
    env: Mapping[str, str] | None = None,
) -> LoggedProcess:
    """`python -m gatescan.cli agent`, the gate as systemd runs it; `env` adds to the test's
    environment (a pin log, failpoints). Its clock says it is synchronised unless the test's
    environment or `env` names another GATESCAN_FAULT_CLOCK: whether this machine's clock is
    synchronised must not change what a scenario sees (an unsynchronised one shows
    `clock_unsynced`, not `idle`, once back)."""
    return LoggedProcess(
        [sys.executable, "-m", "gatescan.cli", "agent", "--config", str(config),
         "--broker", broker_url, "--device-id", device_id, "--data-dir", str(data_dir)],
        log_path,
        {**({} if FAULT_CLOCK_ENV in os.environ else {FAULT_CLOCK_ENV: "synced"}), **(env or {})},
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

    shown: int  # showings: seen lit (`tally_lit`), or events the gate journaled (`tally`)
    stored: int  # distinct events in the collector's database
    duplicates: int  # stored rows beyond one per event_id, or beyond one per code shown once
    lost: int  # showings (or journaled events) the database does not hold, `cut` aside
    invented: int  # stored events never seen lit (or never journaled) (must be 0)
    cut: int = 0  # lit, then the agent SIGKILLed before its journal took them: by design, no event


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


# --- the tally: what the gate was seen to light against the collector's database ------------------


BUZZER_PIN = f"GPIO{IndicatorConfig().buzzer}"
GREEN_PIN = f"GPIO{IndicatorConfig().green}"
_JOURNALED_LINE = re.compile(r"for code ([0-9a-f]{12}): journaled as seq ")


def beeps(pin_log: Path) -> list[PinChange]:
    """The showings a gate lit, from its pin log: every verdict's pattern starts with a beep and
    no background pattern beeps (device/indicator/patterns.py), so each buzzer on-edge is one
    showing, provided the showings are far enough apart for the first beep to end (0.1 s) before
    the next one starts. Only good codes are expected (a denied verdict beeps three times, a log
    mode's "show it again" twice): a beep without green is an AssertionError, not a miscount."""
    lit: dict[str, bool] = {}
    found = []
    for change in read_pin_log(pin_log):
        lit[change.pin] = change.state
        if change.pin == BUZZER_PIN and change.state:
            if not lit.get(GREEN_PIN, False):
                raise AssertionError(f"{pin_log.name}: a beep without green at {change}")
            found.append(change)
    return found


def journaled_digests(process: LoggedProcess) -> frozenset[str]:
    """The codes (first 12 hex digits of their hash) the agent logged as journaled."""
    return frozenset(_JOURNALED_LINE.findall(process.log_text()))


@dataclass(frozen=True)
class LitRun:
    """One agent process as the test saw it: the codes put in front of its camera, in order, and
    how many showings its pins lit. Each code is shown once and decodes (write_frames checks), so
    the lit ones are the first `lit_count`."""

    name: str
    shown: Sequence[bytes]
    lit_count: int
    killed: bool = False  # ended by SIGKILL
    journaled: frozenset[str] = frozenset()  # what its log confirmed journaled (journaled_digests)

    @property
    def lit(self) -> Sequence[bytes]:
        return self.shown[: self.lit_count]


@dataclass(frozen=True)
class LitTally:
    """`tally_lit`'s outcome: the counts, and which showings make up `lost`, `invented`, `cut`."""

    tally: Tally
    lost: list[str]
    invented: list[str]
    cut: list[str]


def tally_lit(
    runs: Sequence[LitRun], stored: Iterable[StoredEntry], journal: Iterable[Event] = ()
) -> LitTally:
    """Compare what the test saw lit with the database, by code hash.

    A lit code the database lacks is `lost`, except one kind, counted as `cut`: the last showing
    a run lit before it was SIGKILLed, when its journal write had not been confirmed (no scan line
    "journaled as seq" in the agent's log) and the gate's journal (`journal`, its history after
    the last run) does not hold it. The gate lights first and journals next, without waiting (the
    light must never wait for the disk), so a kill in between loses that one showing by design.
    A stored code that was never seen lit is `invented`."""
    rows = list(stored)
    stored_codes = {row.code_sha256 for row in rows}
    stored_ids = [row.event_id for row in rows]
    in_journal = {event.code_sha256 for event in journal}
    lit_codes: set[str] = set()
    lost, invented, cut = [], [], []
    for run in runs:
        if run.lit_count > len(run.shown):
            raise AssertionError(
                f"{run.name}: {run.lit_count} showings lit, but only {len(run.shown)} codes were "
                "shown: the pin log does not count showings (a denied verdict, a stray beep)"
            )
        for index, code in enumerate(run.shown):
            digest = code_hash(code)
            where = f"{run.name} code #{index + 1} ({digest[:12]})"
            if index >= run.lit_count:
                if digest in stored_codes:
                    invented.append(
                        f"{where}: stored but only {run.lit_count} showings were seen lit (a code "
                        "the gate did not decode, or a beep the pin log missed, shifts the count "
                        "of the codes after it; or the gate stored an event it never lit)"
                    )
                continue
            lit_codes.add(digest)
            if digest in stored_codes:
                continue
            last_before_kill = run.killed and index == run.lit_count - 1
            confirmed = digest[:12] in run.journaled or digest in in_journal
            if last_before_kill and not confirmed:
                cut.append(f"{where}: lit, then killed before the journal took it")
            else:
                lost.append(f"{where}: lit, not stored" + (" (was journaled)" if confirmed else ""))
    shown_anywhere = {code_hash(code) for run in runs for code in run.shown}
    invented += [
        f"stored code {digest[:12]}: never shown"
        for digest in sorted(stored_codes - shown_anywhere)
    ]
    id_duplicates = len(stored_ids) - len(set(stored_ids))
    code_duplicates = len(rows) - len(stored_codes)
    counts = Tally(
        shown=len(lit_codes),
        stored=len(set(stored_ids)),
        duplicates=max(id_duplicates, code_duplicates),
        lost=len(lost),
        invented=len(invented),
        cut=len(cut),
    )
    return LitTally(tally=counts, lost=lost, invented=invented, cut=cut)


def assert_each_showing_stored_once(outcome: LitTally, context: str = "") -> None:
    """The promise, as the fault scenarios check it: every showing seen lit is stored once (but
    the showings a kill cut between the light and the journal), and nothing else is stored."""
    problems = []
    if outcome.lost:
        problems.append(f"{len(outcome.lost)} lost: " + "; ".join(outcome.lost))
    if outcome.invented:
        problems.append(f"{len(outcome.invented)} invented: " + "; ".join(outcome.invented))
    if outcome.tally.duplicates:
        problems.append(f"{outcome.tally.duplicates} duplicates")
    if problems:
        prefix = f"{context}: " if context else ""
        raise AssertionError(f"{prefix}{outcome.tally}: " + " | ".join(problems))


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
        env: Mapping[str, str] | None = None,
    ) -> LoggedProcess:
        config = write_gate_config(self.root / f"{log_name}.toml", settings)
        agent = start_agent(
            config,
            broker_url=broker_url or self.broker.url,
            device_id=self.device_id,
            data_dir=self.data_dir,
            log_path=self.root / "logs" / f"{log_name}.log",
            env=env,
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

    def wait_until_settled(
        self, codes: Iterable[bytes], timeout: float, quiet_s: float = 2.0
    ) -> None:
        """Until every one of `codes` is stored, or, `quiet_s` after the call, the running gate has
        nothing left to send (its outbox empty): a showing lost before its journal write never
        comes, and the tally, not a timeout, is to say so. Call it after the codes were seen lit
        (their journal writes follow the light within milliseconds)."""
        wanted = {code_hash(code) for code in codes}
        quiet_from = time.monotonic() + quiet_s

        def settled() -> bool:
            if wanted <= {row.code_sha256 for row in self.stored()}:
                return True
            return time.monotonic() > quiet_from and not self.journal_now().outbox

        wait_until(settled, timeout, "the codes stored, or the gate's outbox empty", 0.2)

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
