"""Cost of Journal.record() with small and large files, beside TinyDB's default JSONStorage.

    python -m bench.journal_bench [--samples 500] [--dir PATH]

For each size N, the journal starts with N events in its outbox and N in today's history segment;
each timed record() numbers one draft (the Event built and serialised once) and appends it to
both files (durable: two appends, two fdatasyncs), and the event is then acknowledged, untimed,
so the outbox stays at N. Beside it: TinyDB's own cost of
one insert into a table of N documents in memory (stock Table, and the IncrementalTable the
journal uses), one insert into a single file of N documents with TinyDB's default JSONStorage
(in-place rewrite, one fsync), and what the outbox's storage pays now and then: a compaction and
a reopen (replay) at N. Pass --dir to measure on another filesystem (on a gate: its SD card).
"""

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import MemoryStorage
from tinydb.table import Document

from bench.figures import Figure
from device.journal.durable_files import make_directory_durably
from device.journal.history import EVENTS_TABLE, segment_name
from device.journal.journal import Journal
from device.journal.outbox import META_DOC_ID, META_TABLE, OUTBOX_FILE
from device.journal.storage import open_log_db
from gatescan.testing.samples import sample_draft, sample_event

SIZES = (100, 5000)
GOAL_P99_MS, GOAL_RATIO = 5.0, 2.0


def _timed_ms(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def _documents(count: int, first_seq: int = 1) -> list[Document]:
    return [
        Document(sample_event(seq=seq).model_dump(mode="json"), doc_id=seq)
        for seq in range(first_seq, first_seq + count)
    ]


def _prefill_journal(data_dir: Path, count: int) -> None:
    """Write the journal's files directly: recording N events one by one would take a while."""
    docs = _documents(count)
    root = data_dir / "journal"
    make_directory_durably(root / "history")
    day = datetime.now(UTC).date()
    with open_log_db(root / OUTBOX_FILE) as outbox:
        outbox.table(EVENTS_TABLE).insert_multiple(docs)
        outbox.table(META_TABLE).insert(Document({"last_seq": count}, doc_id=META_DOC_ID))
    with open_log_db(root / "history" / segment_name(day, 1)) as segment:
        segment.table(EVENTS_TABLE).insert_multiple(docs)


def bench_journals(workdir: Path, samples: int) -> dict[int, list[float]]:
    """record() times in ms per size N (N events in the outbox and in the history segment).

    The sizes take turns, one record() each, so both see the same background load.
    """
    times: dict[int, list[float]] = {n: [] for n in SIZES}
    with contextlib.ExitStack() as stack:
        journals = {}
        for n in SIZES:
            data_dir = Path(tempfile.mkdtemp(dir=workdir))
            _prefill_journal(data_dir, n)
            journal = Journal(data_dir, history_max_entries=n + samples + 1)
            journals[n] = stack.enter_context(journal)
        for _ in range(samples):
            for n, journal in journals.items():
                draft = sample_draft()
                times[n].append(_timed_ms(partial(journal.record, draft)))
                journal.acknowledge([draft.event_id])
    return times


def bench_tinydb_insert(workdir: Path, count: int, samples: int, incremental: bool) -> list[float]:
    """TinyDB's own cost: insert() into a table of `count` documents. The stock Table runs on
    MemoryStorage; the IncrementalTable on the journal's storage with a writer that writes
    nothing (its fdatasync of an unchanged file still runs)."""
    if incremental:
        path = Path(tempfile.mkdtemp(dir=workdir)) / "db.log"
        db = open_log_db(path, writer=lambda fd, data: None, compact_min_entries=10**9)
    else:
        db = TinyDB(storage=MemoryStorage)
    table = db.table(EVENTS_TABLE)
    table.insert_multiple(_documents(count))
    doc = sample_event(seq=count + 1).model_dump(mode="json")
    times = []
    for seq in range(count + 1, count + 1 + samples):
        times.append(_timed_ms(partial(table.insert, Document(doc, doc_id=seq))))
        table.remove(doc_ids=[seq])
    db.close()
    return times


def bench_default_storage(workdir: Path, count: int, samples: int) -> list[float]:
    """TinyDB's default JSONStorage: insert() times in ms into one file of `count` documents."""
    path = Path(tempfile.mkdtemp(dir=workdir)) / "db.json"
    times = []
    with TinyDB(path) as db:
        table = db.table(EVENTS_TABLE)
        table.insert_multiple(sample_event(seq=seq).model_dump(mode="json") for seq in range(count))
        for seq in range(samples):
            doc = sample_event(seq=count + seq).model_dump(mode="json")
            times.append(_timed_ms(partial(table.insert, doc)))
    return times


def bench_compaction_and_reopen(workdir: Path, count: int) -> tuple[float, float]:
    """(ms to compact an outbox log of `count` live events, ms to reopen it: replay its lines)."""
    path = Path(tempfile.mkdtemp(dir=workdir)) / OUTBOX_FILE
    with open_log_db(path, compact_ratio=1.0, compact_min_entries=count) as db:
        events = db.table(EVENTS_TABLE)
        events.insert_multiple(_documents(count))
        extra = _documents(1, first_seq=count + 1)
        events.insert_multiple(extra)  # count + 1 entries: not yet over the limit
        compaction_ms = _timed_ms(partial(events.remove, doc_ids=[count + 1]))  # now it is
    reopen_ms = _timed_ms(lambda: open_log_db(path).close())
    return compaction_ms, reopen_ms


def summary(times: list[float]) -> tuple[float, float]:
    """(median, p99) in ms."""
    ordered = sorted(times)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def print_rows(label: str, results: dict[int, list[float]]) -> tuple[float, float]:
    """One row per size and one for the ratios; returns (p99 at the largest size, worst ratio)."""
    for n, times in results.items():
        median, p99 = summary(times)
        print(f"{label:<34}{n:>6}{median:9.3f}{p99:9.3f}")
    (small_median, small_p99), (large_median, large_p99) = (summary(results[n]) for n in SIZES)
    median_ratio, p99_ratio = large_median / small_median, large_p99 / small_p99
    print(f"{label:<34}{'ratio':>6}{median_ratio:8.1f}x{p99_ratio:8.1f}x")
    return large_p99, max(median_ratio, p99_ratio)


def measure(quick: bool = False) -> list[Figure]:
    """The journal's figures for `make bench` (bench/run_all.py)."""
    samples = 50 if quick else 500
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        journal = bench_journals(workdir, samples)
        default = {n: bench_default_storage(workdir, n, min(samples, 100)) for n in SIZES}
    small, large = (summary(journal[n]) for n in SIZES)
    default_small, default_large = (summary(default[n])[0] for n in SIZES)
    return [
        Figure("journal", f"Journal.record() median at {SIZES[1]} entries", large[0], "ms"),
        Figure(
            "journal",
            f"Journal.record() p99 at {SIZES[1]} entries",
            large[1],
            "ms",
            at_most=GOAL_P99_MS,
            note=f"p99 at {SIZES[0]}: {small[1]:.2f} ms",
        ),
        Figure(
            "journal",
            f"record() median ratio {SIZES[1]} / {SIZES[0]} entries",
            large[0] / small[0],
            "x",
            at_most=GOAL_RATIO,
            note=f"TinyDB default storage in the same run: {default_large / default_small:.1f}x",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--samples", type=int, default=500, help="timed writes per size")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: tmp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        workdir = Path(scratch)
        journal = bench_journals(workdir, args.samples)
        stock = {n: bench_tinydb_insert(workdir, n, args.samples, False) for n in SIZES}
        incremental = {n: bench_tinydb_insert(workdir, n, args.samples, True) for n in SIZES}
        default = {n: bench_default_storage(workdir, n, min(args.samples, 200)) for n in SIZES}
        occasional = {n: bench_compaction_and_reopen(workdir, n) for n in SIZES}
    print(f"one write of an event, ms ({args.samples} samples per size; default storage: 200)")
    print(f"{'':34}{'size':>6}{'median':>9}{'p99':>9}")
    worst_p99, worst_ratio = print_rows("Journal.record()", journal)
    print_rows("TinyDB insert, memory, stock Table", stock)
    print_rows("Incremental, 0 bytes written", incremental)
    print_rows("TinyDB default JSONStorage insert", default)
    for n, (compaction_ms, reopen_ms) in occasional.items():
        print(f"outbox of {n} events: compaction {compaction_ms:.1f} ms, reopen {reopen_ms:.1f} ms")
    met = worst_p99 <= GOAL_P99_MS and worst_ratio <= GOAL_RATIO
    print(
        f"goal p99 <= {GOAL_P99_MS} ms and ratio <= {GOAL_RATIO}: {'met' if met else 'NOT met'}"
        f" (p99 {worst_p99:.2f} ms at {SIZES[1]}, larger ratio {worst_ratio:.1f}x)"
    )


if __name__ == "__main__":
    main()
