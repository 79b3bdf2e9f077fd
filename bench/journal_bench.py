"""Cost of Journal.record() with small and large files, beside TinyDB's default JSONStorage.

    python bench/journal_bench.py [--samples 200] [--dir PATH]

For each size N, the journal starts with N events in its outbox and N in today's history segment;
each timed record() adds one event to both files (durable: two atomic replaces, four fsyncs), and
the event is then acknowledged, untimed, so the outbox stays at N. The comparison inserts one
document into a single TinyDB file of N documents with the default JSONStorage (in-place rewrite,
one fsync). Pass --dir to measure on another filesystem (on a gate: its SD card).
"""

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.table import Document

try:
    import device  # noqa: F401  (installed by `make bootstrap`)
except ImportError:  # run straight from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device.journal import (
    EVENTS_TABLE,
    META_DOC_ID,
    META_TABLE,
    OUTBOX_FILE,
    Journal,
    segment_name,
)
from device.tinydb_storage import AtomicJSONStorage, make_directory_durably
from protocol import CredentialType, Direction, Event, Reason, VerdictStatus

SIZES = (100, 5000)
WARM_UP = 3  # the first write after opening serializes every document once; reported apart


def sample_event(seq: int) -> Event:
    code = f"001099012345||Nguyễn Văn An|01011990|Nam|Hà Nội|01012021#{seq}".encode()
    return Event(
        event_id=f"ev-{uuid.uuid4().hex}",
        device_id="gate-01",
        site_id="hq",
        seq=seq,
        boot_id="bench",
        ts=datetime.now(UTC),
        clock_synced=True,
        direction=Direction.IN,
        status=VerdictStatus.RECORDED,
        reason=Reason.OK,
        credential_type=CredentialType.CCCD,
        subject_id="001099012345",
        subject_name="Nguyễn Văn An",
        code_sha256=hashlib.sha256(code).hexdigest(),
        code_length=len(code),
    )


def _timed_ms(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def _prefill_journal(data_dir: Path, count: int) -> None:
    """Write the journal's files directly: recording N events one by one would take minutes."""
    docs = [
        Document(sample_event(seq).model_dump(mode="json"), doc_id=seq)
        for seq in range(1, count + 1)
    ]
    root = data_dir / "journal"
    make_directory_durably(root / "history")
    day = datetime.now(UTC).date()
    with TinyDB(root / OUTBOX_FILE, storage=AtomicJSONStorage) as outbox:
        outbox.table(EVENTS_TABLE).insert_multiple(docs)
        outbox.table(META_TABLE).insert(Document({"last_seq": count}, doc_id=META_DOC_ID))
    with TinyDB(root / "history" / segment_name(day, 1), storage=AtomicJSONStorage) as segment:
        segment.table(EVENTS_TABLE).insert_multiple(docs)


def bench_journal(workdir: Path, count: int, samples: int) -> tuple[list[float], float]:
    """record() times in ms, and the time of the first record() after opening."""
    data_dir = Path(tempfile.mkdtemp(dir=workdir))
    _prefill_journal(data_dir, count)
    times = []
    with Journal(data_dir, history_max_entries=count + samples + WARM_UP + 1) as journal:
        first_ms = 0.0
        for n in range(samples + WARM_UP):
            event = sample_event(journal.next_seq())
            elapsed = _timed_ms(partial(journal.record, event))
            journal.acknowledge([event.event_id])
            if n == 0:
                first_ms = elapsed
            if n >= WARM_UP:
                times.append(elapsed)
    return times, first_ms


def bench_default_storage(workdir: Path, count: int, samples: int) -> list[float]:
    """TinyDB's default JSONStorage: insert() times in ms into one file of `count` documents."""
    path = Path(tempfile.mkdtemp(dir=workdir)) / "db.json"
    times = []
    with TinyDB(path) as db:
        table = db.table(EVENTS_TABLE)
        table.insert_multiple(sample_event(seq).model_dump(mode="json") for seq in range(count))
        for seq in range(samples):
            doc = sample_event(count + seq).model_dump(mode="json")
            times.append(_timed_ms(partial(table.insert, doc)))
    return times


def summary(times: list[float]) -> tuple[float, float]:
    """(median, p99) in ms."""
    ordered = sorted(times)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def print_table(label: str, results: dict[int, list[float]]) -> None:
    for n, times in results.items():
        median, p99 = summary(times)
        print(f"{label:<22}{n:>6}{median:9.2f}{p99:9.2f}")
    (small_median, small_p99), (large_median, large_p99) = (summary(results[n]) for n in SIZES)
    print(
        f"{label:<22} ratio {SIZES[1]}/{SIZES[0]}: median {large_median / small_median:.1f}x,"
        f" p99 {large_p99 / small_p99:.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="timed writes per size")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: tmp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        workdir = Path(scratch)
        journal = {n: bench_journal(workdir, n, args.samples) for n in SIZES}
        default = {n: bench_default_storage(workdir, n, args.samples) for n in SIZES}
    print(f"one write of an event, {args.samples} samples per size, ms")
    print(f"{'':22}{'size':>6}{'median':>9}{'p99':>9}")
    print_table("Journal.record()", {n: times for n, (times, _) in journal.items()})
    print_table("default JSONStorage", default)
    firsts = ", ".join(f"{first:.1f} ms at {n}" for n, (_, first) in journal.items())
    print(f"first record() after opening (serializes every document once): {firsts}")
    print("size: events in the outbox and in the history segment (journal), documents (default)")


if __name__ == "__main__":
    main()
