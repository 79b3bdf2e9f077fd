"""Shared fixtures: a real Mosquitto broker per test, started and stopped by the test itself, the
dashboard's (tests/support/web.py) and a real PostgreSQL (tests/support/postgres.py)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from gatescan.testing.broker import LocalBroker

pytest_plugins = ["tests.support.postgres", "tests.support.web", "tests.support.alert_receivers"]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    with LocalBroker(workdir=tmp_path / "broker") as running:
        yield running
