"""The browser suite's fixtures: one running site for the whole suite (it takes seconds to start:
broker, server, a gate) on a SQLite file, a second one on PostgreSQL for the flows that run on
both (started only when such a test runs), Debian's chromium driven by Playwright, and a
logged-in page per test.

Chromium is the distribution's package (deploy/dev/bootstrap.sh installs it with apt), launched
through `executable_path`; Playwright's own browser download is never used. A missing chromium
fails the suite with what to run: a skip would hide it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy.engine import URL

from gatescan.testing.broker import LocalBroker
from gatescan.testing.postgres import PostgresServer
from tests.support.browser import (
    CHROMIUM_ARGS,
    LOBBY,
    MANAGER,
    OFFLINE_AFTER_S,
    VIEWER,
    PageWatch,
    chromium_executable,
    session_state,
    watched_page,
)
from tests.support.browser_site import Site, add_user, start_server


@contextlib.contextmanager
def running_site(root: Path, db: Path | URL) -> Iterator[Site]:
    """Broker, `gatescan server` on `db`, the manager and the viewer, and the lobby gate."""
    broker = LocalBroker(workdir=root / "broker").start()
    try:
        add_user(db, MANAGER[0], "manager", MANAGER[1], root / "user-add-manager.log")
        add_user(db, VIEWER[0], "viewer", VIEWER[1], root / "user-add-viewer.log")
        server, url = start_server(root, broker, db, ["--offline-after", str(OFFLINE_AFTER_S)])
        running = Site(root, broker, db, url, server, *MANAGER)
        try:
            running.add_gate(LOBBY, "hq", "Sảnh chính", "in")
            yield running
        finally:
            running.close()
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The site most tests use: its database a SQLite file."""
    root = tmp_path_factory.mktemp("dashboard-site")
    with running_site(root, root / "collector.db") as running:
        yield running


@pytest.fixture(scope="session")
def postgres_site(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer
) -> Iterator[Site]:
    """A second site, its database on the PostgreSQL the tests start (kept for the session),
    for a representative flow on that backend: starting a site costs seconds."""
    root = tmp_path_factory.mktemp("dashboard-site-postgres")
    database = postgres_server.create_database()
    try:
        with running_site(root, postgres_server.url(database)) as running:
            yield running
    finally:
        postgres_server.done_with(database)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_executable(), args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def manager_state(browser: Browser, site: Site) -> Any:
    """One login for the whole suite: the login form's rate limit is not the subject here."""
    return session_state(browser, site, *MANAGER)


@pytest.fixture(scope="session")
def viewer_state(browser: Browser, site: Site) -> Any:
    return session_state(browser, site, *VIEWER)


@pytest.fixture(scope="session")
def postgres_manager_state(browser: Browser, postgres_site: Site) -> Any:
    return session_state(browser, postgres_site, *MANAGER)


@pytest.fixture
def postgres_manager_page(
    browser: Browser, postgres_manager_state: Any
) -> Iterator[tuple[Page, PageWatch]]:
    yield from watched_page(browser, postgres_manager_state)


@pytest.fixture
def manager_page(browser: Browser, manager_state: Any) -> Iterator[tuple[Page, PageWatch]]:
    yield from watched_page(browser, manager_state)


@pytest.fixture
def viewer_page(browser: Browser, viewer_state: Any) -> Iterator[tuple[Page, PageWatch]]:
    yield from watched_page(browser, viewer_state)


@pytest.fixture
def anonymous_page(browser: Browser) -> Iterator[tuple[Page, PageWatch]]:
    yield from watched_page(browser, None)
