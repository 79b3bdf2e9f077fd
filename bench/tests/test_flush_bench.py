"""bench/flush_bench.py: backlogs flushed beside a 30 fps and an uncapped camera, all stored."""

import sqlite3
from pathlib import Path

import pytest

from bench import flush_bench
from device.journal.journal import Journal


def test_a_quick_run_flushes_for_both_cameras_with_the_goal_at_30_fps() -> None:
    figures = {figure.name: figure for figure in flush_bench.measure(quick=True, events=300)}

    at_30_fps = figures["frame loop fps, flush / no flush, 30 fps camera"]
    uncapped = figures["frame loop fps, flush / no flush, uncapped camera"]
    assert at_30_fps.at_least == flush_bench.GOAL_FPS_RATIO
    assert "the goal is on this one" in at_30_fps.note
    assert uncapped.goal == "" and "no goal" in uncapped.note
    for ratio in (at_30_fps, uncapped):
        assert "all 300 acknowledged and stored" in ratio.note
    # Uncapped means it: the loop takes frames far faster than a camera gives them.
    calm_uncapped = figures["frame loop with no flush, uncapped camera, same run"]
    assert calm_uncapped.value > 2 * flush_bench.FPS


def test_the_backlog_is_recorded_by_the_journal_and_durable(tmp_path: Path) -> None:
    with flush_bench.durable_at_the_end():
        flush_bench.fill_journal(tmp_path, "gate-test", 25)
    with Journal(tmp_path) as journal:
        pending = journal.pending()
    assert [event.seq for event in pending] == list(range(1, 26))


def test_events_missing_from_the_collector_fail_the_run(tmp_path: Path) -> None:
    database = tmp_path / "collector.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE entries (event_id TEXT PRIMARY KEY, device_id TEXT)")
        conn.executemany("INSERT INTO entries VALUES (?, 'gate-a')", [("e1",), ("e2",)])
    flush_bench.check_stored(database, "gate-a", 2)
    with pytest.raises(RuntimeError, match="2 of 3 events stored"):
        flush_bench.check_stored(database, "gate-a", 3)
