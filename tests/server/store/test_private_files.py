"""The database file and its WAL are readable by their owner only: they hold personal data,
password hashes and session digests."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

from gatescan.testing.samples import sample_event
from server.store.database import Store


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_database_and_its_wal_are_the_owners_only(tmp_path: Path) -> None:
    before = os.umask(0o022)  # the usual umask: files 0644 unless made otherwise
    try:
        check_new_database(tmp_path / "site.db")
    finally:
        os.umask(before)


def check_new_database(path: Path) -> None:
    with Store(path) as store:
        store.add_events([sample_event(event_id="evt-00000001")], datetime.now(UTC))
        assert mode(path) == 0o600
        assert mode(Path(f"{path}-wal")) == 0o600


def test_an_existing_database_readable_by_others_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    Store(path).close()
    os.chmod(path, 0o644)
    with Store(path):
        assert mode(path) == 0o600
