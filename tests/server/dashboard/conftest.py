"""The dashboard suite (and its login/ folder) runs on SQLite and on PostgreSQL: `store_url` (and
so `store`, `app`, `client`) once for each."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from tests.support.web import BACKENDS, both_backends_with_schema


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Path | URL:
    return both_backends_with_schema(request, tmp_path)
