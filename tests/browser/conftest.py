"""The browser suite's fixtures: one running site for the whole suite (it takes seconds to start:
broker, server, a gate), Debian's chromium driven by Playwright, and a logged-in page per test.

Chromium is the distribution's package (deploy/dev/bootstrap.sh installs it with apt), launched
through `executable_path`; Playwright's own browser download is never used. A missing chromium
fails the suite with what to run: a skip would hide it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, sync_playwright

from gatescan.broker import LocalBroker
from tests.browser.stack import Site, add_user, start_server
from tests.faults.harness import PROJECT_ROOT

CHROMIUM_ARGS = [
    "--no-sandbox",  # tests run as root in CI, where chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
SCREENSHOTS = PROJECT_ROOT / ".artifacts" / "screenshots"
MANAGER = ("quanly", "Mật-khẩu quản lý 2026")
VIEWER = ("baove", "Mật-khẩu bảo vệ 2026")
OFFLINE_AFTER_S = 4  # the fleet page flags a gate offline this long (the default is 120)
LOBBY = "gate-lobby-01"


def chromium_executable() -> str:
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if found is None:
        pytest.fail(
            "the browser tests need Debian's chromium package: run `make bootstrap`"
            " (or `apt-get install chromium`)"
        )
    return found


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("dashboard-site")
    broker = LocalBroker(workdir=root / "broker").start()
    db = root / "collector.db"
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
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_executable(), args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


class PageWatch:
    """What a page did that it must not: dialogs (alert/confirm: a script ran that should not
    have) and console errors (a Content-Security-Policy violation is one)."""

    def __init__(self, page: Page) -> None:
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._on_dialog)
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _on_console(self, message: ConsoleMessage) -> None:
        # A refused login or role (401, 403, 429) is an answer the test asked for, not a fault.
        refused = any(f"status of {code}" in message.text for code in (401, 403, 429))
        if message.type == "error" and not refused:
            self.errors.append(message.text)


def log_in(page: Page, site: Site, name: str, password: str) -> None:
    page.goto(f"{site.url}/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit].primary")
    page.wait_for_url(f"{site.url}/")


def session_state(browser: Browser, site: Site, name: str, password: str) -> Any:
    context = browser.new_context()
    try:
        log_in(context.new_page(), site, name, password)
        return context.storage_state()
    finally:
        context.close()


@pytest.fixture(scope="session")
def manager_state(browser: Browser, site: Site) -> Any:
    """One login for the whole suite: the login form's rate limit is not the subject here."""
    return session_state(browser, site, *MANAGER)


@pytest.fixture(scope="session")
def viewer_state(browser: Browser, site: Site) -> Any:
    return session_state(browser, site, *VIEWER)


def watched_page(browser: Browser, state: Any) -> Iterator[tuple[Page, PageWatch]]:
    # A Vietnamese manager's browser: date inputs read dd/mm/yyyy, the clock is the site's.
    context = browser.new_context(
        storage_state=state,
        accept_downloads=True,
        locale="vi-VN",
        timezone_id="Asia/Ho_Chi_Minh",
        viewport={"width": 1366, "height": 768},
    )
    context.set_default_timeout(30_000)
    page = context.new_page()
    watch = PageWatch(page)
    try:
        yield page, watch
    finally:
        context.close()
    assert watch.dialogs == [], f"a script ran in the page: {watch.dialogs}"
    assert watch.errors == [], f"the page logged errors: {watch.errors}"


@pytest.fixture
def manager_page(browser: Browser, manager_state: Any) -> Iterator[tuple[Page, PageWatch]]:
    yield from watched_page(browser, manager_state)


@pytest.fixture
def viewer_page(browser: Browser, viewer_state: Any) -> Iterator[tuple[Page, PageWatch]]:
    yield from watched_page(browser, viewer_state)


@pytest.fixture
def anonymous_page(browser: Browser) -> Iterator[tuple[Page, PageWatch]]:
    yield from watched_page(browser, None)


def screenshot(page: Page, name: str) -> Path:
    """Kept as a test artifact (.artifacts/screenshots/NAME.png), for people to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
