"""Entries older than the retention period are purged, and every purge is logged and audited."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, inspect, select

from server.store.alerts import AlertRows, TrackedAlert
from server.store.audit import AuditLog
from server.store.database import Store
from server.store.retention import PURGE_BATCH, RetentionTask, purge_entries
from server.store.tables import alerts_table
from tests.support.waiting import wait_until
from tests.support.web import START, MovableClock, cccd_event

DAY = timedelta(days=1)


def test_entries_older_than_the_retention_are_purged_and_the_purge_is_logged(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    store.add_events(
        [
            cccd_event(1, subject="079190000001", ts=START - 31 * DAY),
            cccd_event(2, subject="079190000002", ts=START - 30 * DAY - timedelta(seconds=1)),
            cccd_event(3, subject="079190000003", ts=START - 29 * DAY),
            cccd_event(4, subject="079190000004", ts=START),
        ],
        received_at=START,
    )
    with caplog.at_level(logging.INFO, logger="gatescan.retention"):
        result = purge_entries(store, 30, now=START)
    assert result.deleted == 2
    assert result.cutoff == START - 30 * DAY
    assert sorted(e.subject_id for e in store.entries()) == ["079190000003", "079190000004"]
    assert "deleted 2 entries older than" in caplog.text
    (row,) = AuditLog(store.engine).rows(action="purge")
    assert (row.actor, row.details["deleted"], row.details["retention_days"]) == ("system", 2, 30)


def test_a_purge_larger_than_a_batch_deletes_everything_old(store: Store) -> None:
    old = [
        cccd_event(n, subject="079190000001", ts=START - 40 * DAY) for n in range(PURGE_BATCH + 7)
    ]
    store.add_events(old, received_at=START)
    assert purge_entries(store, 30, now=START).deleted == PURGE_BATCH + 7
    assert store.count_entries() == 0


def test_a_retention_of_zero_days_is_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        purge_entries(store, 0, now=START)


def test_the_retention_task_purges_in_the_background(store: Store) -> None:
    store.add_events([cccd_event(1, subject="079190000001", ts=START - 91 * DAY)], START)
    task = RetentionTask(store, 90, every_s=3600, clock=MovableClock())
    task.start()
    try:
        wait_until(lambda: store.count_entries() == 0, 10, "the background purge")
    finally:
        task.stop()
    assert AuditLog(store.engine).rows(action="purge")


# --- the purge reads an index, not the table ---------------------------------------------------


def _purge_select(store: Store) -> tuple[str, Any]:
    """The SELECT the purge really sends (statement and parameters), caught on its way out."""
    sent: list[tuple[str, Any]] = []

    def catch(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM entries" in statement:
            sent.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", catch)
    try:
        purge_entries(store, 30, now=START)
    finally:
        event.remove(store.engine, "before_cursor_execute", catch)
    assert sent, "the purge sent no SELECT over entries"
    return sent[0]


def _query_plan(store: Store, statement: str, parameters: Any) -> list[str]:
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
    return [str(row[-1]) for row in rows]


def test_the_purge_searches_indexes_instead_of_scanning_the_entries(sqlite_store: Store) -> None:
    store = sqlite_store  # the plan is SQLite's; PostgreSQL plans by its statistics
    store.add_events(
        [cccd_event(n, subject=f"0791900{n:05d}", ts=START - n * DAY) for n in range(200)],
        received_at=START,
    )
    plan = _query_plan(store, *_purge_select(store))
    # received_at < cutoff OR (clock synced AND ts < cutoff): one index per side of the OR.
    assert any("USING INDEX ix_entries_received_at (received_at<?)" in step for step in plan), plan
    assert any("USING INDEX ix_entries_ts_device (ts<?)" in step for step in plan), plan
    assert not any(step.startswith("SCAN entries") for step in plan), plan


def test_an_existing_database_gets_the_received_at_index_when_opened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "older.db"
    with Store(path) as older:  # a database from before the index: drop it to make one
        with older.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE alembic_version")  # made before migrations
            conn.exec_driver_sql("DROP INDEX ix_entries_received_at")
        assert any(s.startswith("SCAN entries") for s in _query_plan(older, *_purge_select(older)))
    with caplog.at_level(logging.INFO, logger="gatescan.store"), Store(path) as upgraded:
        indexes = {i["name"] for i in inspect(upgraded.engine).get_indexes("entries")}
        plan = _query_plan(upgraded, *_purge_select(upgraded))
    assert "ix_entries_received_at" in indexes
    assert not any(step.startswith("SCAN entries") for step in plan), plan
    assert "creating index ix_entries_received_at" in caplog.text


# --- dead letters and audit rows go with the entries ----------------------------------------------

TOPIC = "gatescan/v1/devices/gate-1/events"


def test_dead_letters_and_audit_rows_older_than_the_retention_are_purged_too(
    store: Store,
) -> None:
    name_and_id = b'{"event_id":"evt-00000001","subject_name":"Nguyen Van An","subject_id":"0791'
    store.dead_letter(TOPIC, name_and_id + b'1"', "schema", "old", START - 31 * DAY)
    store.dead_letter(TOPIC, name_and_id + b'2"', "schema", "recent", START - 29 * DAY)
    # Refused first long ago, and again (a repeat) within the retention: kept.
    store.dead_letter(TOPIC, name_and_id + b'3"', "schema", "repeated", START - 60 * DAY)
    store.dead_letter(TOPIC, name_and_id + b'3"', "schema", "repeated", START - DAY)
    store.dead_letter(TOPIC, b"{", "not_json", "old too", START - 90 * DAY)
    audit = AuditLog(store.engine, clock=lambda: START - 31 * DAY)
    audit.record("lan", "unmask", "079190000001", {"shown": ["079190000001"]})
    AuditLog(store.engine, clock=lambda: START - 29 * DAY).record("lan", "trace", "079190000002")

    result = purge_entries(store, 30, now=START)

    assert (result.dead_letters, result.audit_rows) == (2, 1)
    assert sorted(letter.detail for letter in store.dead_letters()) == ["recent", "repeated"]
    rows = AuditLog(store.engine).rows()
    assert [(row.action, row.subject) for row in rows] == [
        ("purge", ""),  # the purge's own row, written after it
        ("trace", "079190000002"),
    ]
    assert (rows[0].details["dead_letters"], rows[0].details["audit_rows"]) == (2, 1)


def test_alerts_cleared_before_the_retention_are_purged_and_open_ones_stay(store: Store) -> None:
    def alert(key: str, first_seen: datetime) -> TrackedAlert:
        return TrackedAlert(
            key=key, kind="offline", site_id="hq", device_id="gate-1", for_s=0.0,
            summary_en="gate gate-1 is offline", summary_vi="cổng gate-1 mất kết nối",
            first_seen=first_seen, last_seen=first_seen, opened_at=first_seen,
        )  # fmt: skip

    kept = AlertRows(store.engine)
    kept.save([alert("offline:old", START - 40 * DAY), alert("offline:recent", START - DAY)], [])
    kept.save([alert("offline:open", START - 90 * DAY)], [
        ("offline:old", START - 31 * DAY), ("offline:recent", START - 29 * DAY)
    ])  # fmt: skip

    result = purge_entries(store, 30, now=START)

    assert result.alerts == 1
    with store.engine.connect() as conn:
        left = conn.execute(select(alerts_table.c.key).order_by(alerts_table.c.key)).scalars()
        assert list(left) == ["offline:open", "offline:recent"]
    assert AuditLog(store.engine).rows(action="purge")[0].details["alerts"] == 1


def test_a_purge_of_more_dead_letters_than_a_batch_deletes_them_all(store: Store) -> None:
    for n in range(PURGE_BATCH + 3):
        store.dead_letter(TOPIC, b"{%d" % n, "not_json", "old", START - 40 * DAY)

    assert purge_entries(store, 30, now=START).dead_letters == PURGE_BATCH + 3
    assert store.dead_letter_count() == 0
