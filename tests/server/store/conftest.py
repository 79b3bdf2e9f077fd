"""The store suite runs on SQLite and on PostgreSQL: `store_url` (and so `store`) once for each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from server.store.database import Store
from tests.support.web import BACKENDS, both_backends


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Path | URL:
    return both_backends(request, tmp_path)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """A store on SQLite alone, for what only SQLite has (its query plans, PRAGMAs, files)."""
    with Store(tmp_path / "gatescan.db") as opened:
        yield opened
