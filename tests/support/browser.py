"""Helpers for the browser tests: Debian's chromium, the suite's users, a page whose console and
dialogs are watched, logging in, and screenshots kept in .artifacts/screenshots/.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page

from tests.support.browser_site import Site
from tests.support.paths import PROJECT_ROOT

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


class PageWatch:
    """What a page did that it must not: dialogs (alert/confirm: a script ran that should not
    have) and console errors (a Content-Security-Policy violation is one)."""

    def __init__(self, page: Page) -> None:
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        # Statuses a test provokes on purpose (400: a form refused and shown again).
        self.expected: set[int] = set()
        page.on("dialog", self._on_dialog)
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _on_console(self, message: ConsoleMessage) -> None:
        # A refused login or role (401, 403, 429) is an answer the test asked for, not a fault.
        refused = any(f"status of {code}" in message.text for code in (401, 403, 429))
        refused = refused or any(f"status of {code}" in message.text for code in self.expected)
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


def screenshot(page: Page, name: str) -> Path:
    """Kept as a test artifact (.artifacts/screenshots/NAME.png), for people to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
