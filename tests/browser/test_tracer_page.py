"""The province's contact tracer in a real browser (Debian's chromium) against the real site of
tests/browser/conftest.py: made with `gatescan user add --role tracer`, it lands on the tracing
page, sees only tracing in the menu, cannot trace without a reason, finds the contacts, and is
offered no download; its trace is a row of the gate's site in the audit log a manager reads."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from gatescan.testing.samples import cccd_payload
from server.dashboard.i18n.translate import Translator
from tests.support.browser import LOBBY, PageWatch, screenshot
from tests.support.browser_site import Site, add_user

TRACER = ("soyte", "Mật-khẩu truy vết 2026")
REASON = "Ca F0 số 17, chợ Bến Thành"
HOA_ID, HOA_NAME = "079195054321", "Lê Thị Hoa"
MINH_ID, MINH_NAME = "001092098765", "Phạm Quang Minh"
CARD_HOA = cccd_payload(HOA_ID, HOA_NAME, "03031995", "Nữ", "Quận 1, TP. Hồ Chí Minh", "01022021")
CARD_MINH = cccd_payload(MINH_ID, MINH_NAME, "09091992", "Nam", "Thủ Đức, TP. HCM", "11112021")
VI = Translator("vi")


@pytest.fixture(scope="module")
def tracer_account(site: Site) -> tuple[str, str]:
    add_user(site.db, TRACER[0], "tracer", TRACER[1], site.root / "user-add-tracer.log")
    return TRACER


def test_a_tracer_traces_with_a_reason_and_sees_nothing_else(
    anonymous_page: tuple[Page, PageWatch],
    manager_page: tuple[Page, PageWatch],
    site: Site,
    tracer_account: tuple[str, str],
) -> None:
    site.show_and_wait(LOBBY, CARD_HOA)
    site.show_and_wait(LOBBY, CARD_MINH)
    page, _ = anonymous_page
    page.goto(f"{site.url}/login")
    page.fill("input[name=username]", tracer_account[0])
    page.fill("input[name=password]", tracer_account[1])
    page.click("button[type=submit].primary")
    expect(page).to_have_url(f"{site.url}/tracing")
    expect(page.locator(".mainnav a")).to_have_count(1)
    expect(page.locator(".mainnav a")).to_have_attribute("href", "/tracing")

    page.fill("#tr-subject", HOA_ID)
    page.click("#tracing-form button")  # no reason: the browser holds the form back
    expect(page).to_have_url(f"{site.url}/tracing")
    page.fill("#tr-reason", REASON)
    page.click("#tracing-form button")
    contact = page.locator(f'#contacts-table tbody tr[data-subject="{MINH_ID}"]')
    expect(contact).to_contain_text(MINH_NAME)
    expect(page.locator("#tracing-covered")).to_have_text(VI("tracing.covered_all"))
    expect(page.locator("#tracing-result a[download]")).to_have_count(0)
    assert re.search(r"/tracing\?q=[^&]+.*&r=", page.url), page.url
    assert HOA_ID not in page.url and "F0" not in page.url  # neither the ID nor the reason
    screenshot(page, "tracer-tracing")

    for other in ("/entries", "/", "/export", "/audit", "/api/v1/entries"):  # by its cookie
        assert page.request.get(f"{site.url}{other}").status == 403, other

    manager, _ = manager_page
    manager.goto(f"{site.url}/audit?action=trace")
    row = manager.locator("#audit-table tbody tr", has_text=tracer_account[0]).first
    expect(row).to_contain_text(REASON)
    expect(row).to_have_attribute("data-site", "hq")  # the gate's site: one site traced
    screenshot(manager, "audit-log")
