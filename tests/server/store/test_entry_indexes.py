"""The entries' indexes: time, then gate (no index starts with the gate), and an older
database's indexes brought to this layout when it is opened."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Select, inspect
from sqlalchemy.engine import URL

from server.dashboard.reports.entries import EntryFilter, filtered_query, find_entries
from server.store.database import Store
from tests.support.web import START, cccd_event

MINUTE = timedelta(minutes=1)


def _plan(store: Store, query: Select[Any]) -> list[str]:
    compiled = query.compile(store.engine)
    with store.engine.connect() as conn:
        sql = "EXPLAIN QUERY PLAN " + str(compiled)
        rows = conn.exec_driver_sql(sql, tuple(compiled.params.values())).all()
    return [str(row[-1]) for row in rows]


def _entry_indexes(store: Store) -> dict[str, list[str]]:
    indexes = inspect(store.engine).get_indexes("entries")
    return {str(i["name"]): [str(c) for c in i["column_names"]] for i in indexes}


def _three_gates(store: Store) -> None:
    events = [
        cccd_event(n, subject=f"0791900{n:05d}", ts=START + n * MINUTE, device=f"gate-{n % 3}")
        for n in range(60)
    ]
    store.add_events(events, received_at=START)


def test_a_gate_within_a_time_range_is_read_from_the_time_and_gate_index(
    sqlite_store: Store,
) -> None:
    store = sqlite_store  # the plan is SQLite's; PostgreSQL plans by its statistics
    _three_gates(store)
    wanted = EntryFilter(device_id="gate-1", since=START + 10 * MINUTE, until=START + 40 * MINUTE)

    page = find_entries(store, wanted)

    # gate-1 is every third minute: 10, 13, ..., 37 (the ones with n % 3 == 1 in [10, 40)).
    assert page.total == 10
    assert {row.device_id for row in page.items} == {"gate-1"}
    assert [row.ts for row in page.items] == sorted((row.ts for row in page.items), reverse=True)
    plan = _plan(store, filtered_query(wanted))
    assert any("INDEX ix_entries_ts_device (ts>? AND ts<?)" in step for step in plan), plan


def test_no_index_starts_with_the_gate(store: Store) -> None:
    indexes = _entry_indexes(store)

    assert indexes["ix_entries_ts_device"] == ["ts", "device_id"]
    assert not [name for name, columns in indexes.items() if columns[0] == "device_id"]


def test_an_older_database_gets_this_index_layout_when_opened(
    store_url: Path | URL, caplog: pytest.LogCaptureFixture
) -> None:
    with Store(store_url) as older:  # the layout before: a gate-first index and one on ts alone
        _three_gates(older)
        with older.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE alembic_version")  # made before migrations
            conn.exec_driver_sql("DROP INDEX ix_entries_ts_device")
            conn.exec_driver_sql(
                "CREATE INDEX ix_entries_device_boot_seq ON entries (device_id, boot_id, seq)"
            )
            conn.exec_driver_sql("CREATE INDEX ix_entries_ts ON entries (ts)")

    with caplog.at_level(logging.INFO, logger="gatescan.store"), Store(store_url) as upgraded:
        indexes = _entry_indexes(upgraded)
        assert upgraded.count_entries() == 60
        assert find_entries(upgraded, EntryFilter(device_id="gate-2")).total == 20

    assert "ix_entries_device_boot_seq" not in indexes and "ix_entries_ts" not in indexes
    assert indexes["ix_entries_ts_device"] == ["ts", "device_id"]
    assert "creating index ix_entries_ts_device" in caplog.text
    assert "dropping index ix_entries_device_boot_seq" in caplog.text
    assert "dropping index ix_entries_ts" in caplog.text
