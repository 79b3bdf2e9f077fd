"""SQLite's cost per stored event at 500 gates, by index layout and kind of event id.

    python -m bench.store_bench [--quick] [--entries 400000]    (about a minute and a half)

The collector's store alone (no broker, no MQTT): a table filled with `--entries` rows, then the
CPU time (user + system, this thread) of storing 100,000 more through Store.write_batch, 300
events per commit from 500 gates, each event stamped with the time it is stored. Layouts:

- `now`: this version's indexes and a gate's time-ordered ids (protocol/event_ids.py);
- `random ids`: the same indexes, random ids (uuid4: what older gates send);
- `before`: random ids, and the index layout before (gate first, and ts alone);
- `many people`: as `now`, with a different person in every event (the benchmark's other events
  all name one, as bench/ingest_bench.py's do).

Then, on the `now` table, one page of a gate's entries with their total (the dashboard's gate
filter, no date range), which this layout answers from the time index.
"""

from __future__ import annotations

import random
import resource
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.figures import Figure, bench_main
from gatescan.testing.samples import sample_event
from protocol.event_ids import new_event_id
from server.dashboard.reports.entries import EntryFilter, find_entries
from server.store.database import Store
from server.store.writes import ENTRY_COLUMNS, EntryRow, WriteBatch, utc_datetime_text

GATES = 500
PER_COMMIT = 300
MEASURED = 100_000
ENTRIES = 400_000
QUICK_ENTRIES, QUICK_MEASURED = 20_000, 10_000
OLD_INDEXES = (  # in place of ix_entries_ts_device
    "DROP INDEX ix_entries_ts_device",
    "CREATE INDEX ix_entries_device_boot_seq ON entries (device_id, boot_id, seq)",
    "CREATE INDEX ix_entries_ts ON entries (ts)",
)


@dataclass(frozen=True)
class Layout:
    name: str
    make_id: Callable[[], str]
    old_indexes: bool = False
    many_people: bool = False


LAYOUTS = (
    Layout("now", new_event_id),
    Layout("random ids", lambda: uuid.uuid4().hex),
    Layout("before", lambda: uuid.uuid4().hex, old_indexes=True),
    Layout("many people", new_event_id, many_people=True),
)


class Events:
    """Rows as the collector hands them to the store: one real event's, with a new id, gate,
    seq and time (and person) each."""

    def __init__(self, store: Store, layout: Layout, rng: random.Random) -> None:
        template = store.entry_row(sample_event(subject_id="079203012345"))
        self._values = list(template.values)
        self._at = {name: ENTRY_COLUMNS.index(name) for name in ("device_id", "seq", "ts")}
        self._subject = ENTRY_COLUMNS.index("subject_id")
        self._event_id = ENTRY_COLUMNS.index("event_id")
        self._layout = layout
        self._rng = rng
        self._seq = [0] * GATES

    def batch(self, size: int) -> list[EntryRow]:
        now = utc_datetime_text(datetime.now(UTC))
        rows = []
        for _ in range(size):
            gate = self._rng.randrange(GATES)
            self._seq[gate] += 1
            values = list(self._values)
            event_id = values[self._event_id] = self._layout.make_id()
            values[self._at["device_id"]] = f"gate-{gate:03d}"
            values[self._at["seq"]] = self._seq[gate]
            values[self._at["ts"]] = now
            if self._layout.many_people:
                values[self._subject] = f"0{self._rng.randrange(10**11):011d}"
            rows.append(EntryRow(event_id, tuple(values)))
        return rows


def store_rows(store: Store, events: Events, count: int) -> float:
    """Store `count` rows, PER_COMMIT per commit; CPU seconds (user + system) this thread spent."""
    cpu = 0.0
    for _ in range(0, count, PER_COMMIT):
        rows = events.batch(PER_COMMIT)
        before = resource.getrusage(resource.RUSAGE_THREAD)
        store.write_batch(WriteBatch(entries=rows), datetime.now(UTC))
        after = resource.getrusage(resource.RUSAGE_THREAD)
        cpu += (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu


def measure_layout(
    layout: Layout, entries: int, measured: int, folder: Path
) -> tuple[float, Store]:
    store = Store(folder / f"{layout.name.replace(' ', '-')}.db")
    if layout.old_indexes:
        with store.engine.begin() as conn:
            for statement in OLD_INDEXES:
                conn.exec_driver_sql(statement)
    events = Events(store, layout, random.Random(7))
    store_rows(store, events, entries)
    cpu = store_rows(store, events, measured)
    return cpu / measured * 1e6, store


def measure(quick: bool = False, entries: int | None = None) -> list[Figure]:
    filled = entries if entries is not None else (QUICK_ENTRIES if quick else ENTRIES)
    measured = QUICK_MEASURED if quick else MEASURED
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="gatescan-store-") as scratch:
        for layout in LAYOUTS:
            us, store = measure_layout(layout, filled, measured, Path(scratch))
            try:
                figures.append(
                    Figure(
                        "collector",
                        f"SQLite CPU per stored event, {layout.name}",
                        us,
                        "us",
                        note=f"{GATES} gates, {PER_COMMIT} per commit, after {filled:,} entries",
                    )
                )
                if layout.name == "now":
                    figures.append(gate_filter_figure(store))
            finally:
                store.close()
    return figures


def gate_filter_figure(store: Store) -> Figure:
    started = time.perf_counter()
    page = find_entries(store, EntryFilter(device_id="gate-007"))
    elapsed = (time.perf_counter() - started) * 1000
    total = store.count_entries()
    note = f"{page.total:,} of {total:,} entries; from the (ts, device_id) index"
    return Figure(
        "collector", "a gate's entries, no date range: page + total", elapsed, "ms", note=note
    )


def main(argv: Sequence[str] | None = None) -> int:
    # bench_main's --backend (a decoder) does not apply here.
    return bench_main(
        argv,
        __doc__,
        "bench.store_bench",
        lambda quick, _backend, entries: measure(quick, entries),
        ("entries", int),
        decimals=1,
    )


if __name__ == "__main__":
    raise SystemExit(main())
