"""Kill a real writer process with SIGKILL at random moments; the journal must always reopen whole.

The writer (tests/support/journal_disk.py) prints an event_id only after record() returned, so
every printed id is a promise: it must be in the outbox (nothing is acknowledged here) and in the
history after any kill. The same data dir is reused across runs, so the journal grows, rolls over
history segments and is reopened (and repaired) each time.

The second test kills a writer whose storage compacts (rewrites the log by atomic replace) after
every write, so most kills land inside a compaction; a temp file left behind proves it did.
"""

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from device.journal.durable_files import TEMP_SUFFIX
from device.journal.journal import Journal
from device.journal.storage import open_log_db
from tests.support.journal_disk import COMPACTING_TABLE, compacting_doc
from tests.support.paths import PROJECT_ROOT

RUNS = 30
HISTORY_MAX_ENTRIES = 40  # small, so kills also land on segment rollovers
LONGEST_RUN_S = 0.3
STARTUP_TIMEOUT_S = 30.0
COMPACTING_RUNS = 25  # about a third of the kills land while the temp file exists
COMPACTING_WINDOW = 500  # live documents: each compaction rewrites about 30 kB


class _KilledWriter:
    """One writer process, its printed event ids collected by a reader thread."""

    def __init__(self, args: list[str], stderr_path: Path) -> None:
        self.printed: list[str] = []
        self.ready = threading.Event()
        self._stderr = stderr_path.open("w")
        command = [sys.executable, "-m", "tests.support.journal_disk"]
        self._process = subprocess.Popen(
            [*command, *args],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._reader = threading.Thread(target=self._read_lines, daemon=True)
        self._reader.start()

    def _read_lines(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            if line == "ready\n":
                self.ready.set()
            elif line.endswith("\n"):  # a line cut short by the kill was never fully printed
                self.printed.append(line.rstrip("\n"))

    def kill(self) -> int:
        self._process.send_signal(signal.SIGKILL)
        returncode = self._process.wait()
        self._reader.join()
        self._stderr.close()
        return returncode


def _run_writer_and_kill(args: list[str], stderr_path: Path, run_for_s: float) -> list[str]:
    writer = _KilledWriter(args, stderr_path)
    started = writer.ready.wait(STARTUP_TIMEOUT_S)
    if started:
        # The kill moment is this test's random variable; nothing is being waited for.
        time.sleep(run_for_s)
    returncode = writer.kill()
    assert started, f"writer never opened the journal: {stderr_path.read_text()}"
    assert returncode == -signal.SIGKILL, f"writer died by itself: {stderr_path.read_text()}"
    return writer.printed


def _assert_journal_whole(data_dir: Path, printed: list[str], runs_done: int, note: str) -> None:
    with Journal(data_dir, history_max_entries=HISTORY_MAX_ENTRIES) as journal:
        pending = [entry.event() for entry in journal.pending()]
        days = sorted({event.ts.date() for event in pending})
        history = [event for day in days for event in journal.history(day)]
    journal_dir = data_dir / "journal"
    assert not list(journal_dir.rglob("*.corrupt-*")), f"a file was corrupt {note}"
    assert not list(journal_dir.rglob(".*.tmp")), f"stray temp files survived reopening {note}"

    pending_seqs = [event.seq for event in pending]
    assert pending_seqs == sorted(set(pending_seqs)), (
        f"outbox seqs repeat or are out of order {note}"
    )
    history_seqs = [event.seq for event in history]
    assert len(set(history_seqs)) == len(history_seqs), f"history seqs repeat {note}"

    seq_of = {event.event_id: event.seq for event in pending}
    assert not [i for i in printed if i not in seq_of], f"printed events missing from outbox {note}"
    in_history = {event.event_id for event in history}
    assert not [i for i in printed if i not in in_history], f"printed events not in history {note}"
    printed_seqs = [seq_of[event_id] for event_id in printed]
    assert printed_seqs == sorted(set(printed_seqs)), f"seq went back across a restart {note}"
    # At most one event per kill can be recorded without having been printed (the one in flight).
    assert len(pending) <= len(printed) + runs_done, f"unexpected extra events {note}"


def test_journal_reopens_whole_after_sigkill_at_random_moments(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    data_dir = tmp_path / "gate"
    printed: list[str] = []
    for run in range(1, RUNS + 1):
        run_for_s = rng.uniform(0.0, LONGEST_RUN_S)
        args = [str(data_dir), str(HISTORY_MAX_ENTRIES)]
        printed += _run_writer_and_kill(args, tmp_path / f"writer-{run}.err", run_for_s)
        note = f"(run {run}, killed after {run_for_s * 1000:.0f} ms, seed {seed})"
        _assert_journal_whole(data_dir, printed, run, note)
    assert len(printed) > RUNS, "the writer hardly wrote anything: the test proved little"


def _assert_log_whole(path: Path, last_printed: int, note: str) -> int:
    """The log holds the window up to the last document printed, or one past it (the write in
    flight when the kill came); the log's last document, which the next writer goes on from."""
    with open_log_db(path) as db:
        docs = {doc.doc_id: dict(doc) for doc in db.table(COMPACTING_TABLE).all()}
    assert not list(path.parent.glob("*.corrupt-*")), f"the log was damaged {note}"
    assert not list(path.parent.glob(f".*{TEMP_SUFFIX}")), f"a temp file survived opening {note}"
    # The write in flight when the kill came may have landed, or not; nothing else may differ.
    last = max(docs, default=0)
    assert last in (last_printed, last_printed + 1), f"log ends at {last} {note}"
    expected = range(max(1, last - COMPACTING_WINDOW + 1), last + 1)
    assert docs == {n: compacting_doc(n) for n in expected}, f"live documents differ {note}"
    return last


def test_log_reopens_whole_after_sigkill_during_compaction(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    path = tmp_path / "compacting.log"
    last_printed, interrupted_compactions = 0, 0
    for run in range(1, COMPACTING_RUNS + 1):
        run_for_s = rng.uniform(0.02, LONGEST_RUN_S)
        args = ["--compacting", str(path), str(COMPACTING_WINDOW)]
        printed = _run_writer_and_kill(args, tmp_path / f"compacting-{run}.err", run_for_s)
        last_printed = int(printed[-1]) if printed else last_printed
        interrupted_compactions += bool(list(tmp_path.glob(f".*{TEMP_SUFFIX}")))
        note = f"(run {run}, killed after {run_for_s * 1000:.0f} ms, seed {seed})"
        # A run killed before it printed anything may still have landed its first write: the
        # next run goes on from the log's end, not from the last number printed.
        last_printed = _assert_log_whole(path, last_printed, note)
    compactions = last_printed - COMPACTING_WINDOW  # every write after the first WINDOW
    assert compactions > 100, f"only {compactions} compactions: the test proved little"
    assert interrupted_compactions > 0, f"no kill landed inside a compaction (seed {seed})"
