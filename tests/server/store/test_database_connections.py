"""The store hands a thread that writes again the connection it wrote with (its page cache is
still good: SQLite drops a connection's cache when another connection changed the database)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event

from gatescan.testing.samples import sample_event
from server.store.database import Store


def test_batch_after_batch_is_written_on_one_connection(tmp_path: Path) -> None:
    with Store(tmp_path / "gatescan.db") as store:
        # Another thread read meanwhile, so the pool holds more than one connection.
        reader = threading.Thread(target=store.count_entries)
        with store.engine.connect():
            reader.start()
            reader.join()
        assert store.engine.pool.checkedin() >= 2  # type: ignore[attr-defined]
        used: list[int] = []

        def on_begin(conn: Any) -> None:
            used.append(id(conn.connection.dbapi_connection))

        event.listen(store.engine, "begin", on_begin)
        for _ in range(6):
            store.add_events([sample_event()], datetime.now(UTC))

        assert len(used) == 6 and len(set(used)) == 1
        assert store.count_entries() == 6


def test_a_database_in_memory_still_opens() -> None:
    with Store("sqlite://") as store:  # its pool is one connection per thread: no LIFO option
        store.add_events([sample_event()], datetime.now(UTC))
        assert store.count_entries() == 1
