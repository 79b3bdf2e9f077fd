"""A user changes their own password on the account page, in a real browser against the real
site: the notice, the other browser logged out, and the new password the one that works.

The suite's site is shared, so this test makes a user of its own (the CLI, as an administrator
would): the manager's and the viewer's logins stay as the other tests expect them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import PageWatch, log_in, screenshot, watched_page
from tests.support.browser_site import Site, add_user

USER = "doimatkhau"
OLD_PASSWORD = "Mật-khẩu cũ 2026"
NEW_PASSWORD = "Mật-khẩu mới của tôi 2027"

Watched = tuple[Page, PageWatch]


@pytest.fixture
def second_browser(browser: Browser) -> Iterator[Watched]:
    yield from watched_page(browser, None)


def test_a_user_changes_their_password_and_logs_in_with_the_new_one(
    anonymous_page: Watched, second_browser: Watched, site: Site
) -> None:
    add_user(site.db, USER, "viewer", OLD_PASSWORD, site.root / f"user-add-{USER}.log")
    page, watch = anonymous_page
    elsewhere, _ = second_browser
    log_in(elsewhere, site, USER, OLD_PASSWORD)  # the same user on another device
    log_in(page, site, USER, OLD_PASSWORD)

    page.goto(f"{site.url}/account")
    form = page.locator("#password-form")
    expect(form.locator("label[for=p-current]")).to_have_text("Mật khẩu hiện tại")
    form.locator("#p-current").fill(OLD_PASSWORD)
    form.locator("#p-new").fill(NEW_PASSWORD)
    form.locator("#p-again").fill(NEW_PASSWORD + " typo")
    form.locator("button[type=submit]").click()
    expect(page.locator("#password-error")).to_have_text(
        "Hai lần nhập mật khẩu mới không khớp nhau."
    )
    expect(page.locator("#p-current")).to_have_value("")  # nothing typed comes back
    # The refusal is a 400, which chromium logs; it is the answer asked for, not a fault.
    refused = [error for error in watch.errors if "status of 400" in error]
    assert len(refused) == 1, watch.errors
    watch.errors.remove(refused[0])

    form.locator("#p-current").fill(OLD_PASSWORD)
    form.locator("#p-new").fill(NEW_PASSWORD)
    form.locator("#p-again").fill(NEW_PASSWORD)
    form.locator("button[type=submit]").click()
    expect(page).to_have_url(f"{site.url}/account?password=changed")
    expect(page.locator("#password-changed")).to_have_text(
        "Đã đổi mật khẩu. Các phiên đăng nhập khác đã bị đăng xuất."
    )
    screenshot(page, "10-password-changed")

    elsewhere.goto(f"{site.url}/account")  # the other device's session ended
    expect(elsewhere).to_have_url(re.compile(r"/login\?next="))

    page.click(".logout button")
    expect(page).to_have_url(f"{site.url}/login")
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", OLD_PASSWORD)
    page.click("button[type=submit].primary")
    expect(page.locator(".alert-error")).to_have_text("Sai tên đăng nhập hoặc mật khẩu.")
    log_in(page, site, USER, NEW_PASSWORD)
    expect(page.locator(".session .who")).to_contain_text(USER)

    server_log = site.server.log_text()
    for password in (OLD_PASSWORD, NEW_PASSWORD):
        assert password not in server_log
