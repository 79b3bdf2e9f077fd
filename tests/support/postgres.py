"""A real PostgreSQL for the tests, started by the tests (a plugin of tests/conftest.py), on
gatescan/testing/postgres.py (which says how the cluster is made and run).

`postgres_server` (one per test session, so one per xdist worker): the running cluster.

`postgres_url`: a fresh, empty database for one test, made from template0 (and dropped when
the next one is made); a SQLAlchemy URL.

No PostgreSQL installed is a failure that says to run `make bootstrap`, never a skip.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import URL

from gatescan.testing.postgres import PostgresServer, PostgresUnavailable, running_postgres


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(running_postgres())
        except PostgresUnavailable as error:
            pytest.fail(str(error), pytrace=False)
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[URL]:
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.done_with(name)
