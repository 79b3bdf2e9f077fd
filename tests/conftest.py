"""Shared fixtures: a real Mosquitto broker per test, started and stopped by the test itself."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from gatescan.broker import LocalBroker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    with LocalBroker(workdir=tmp_path / "broker") as running:
        yield running
