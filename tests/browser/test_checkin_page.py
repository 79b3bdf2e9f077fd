"""The self check-in page on a phone (issue 18): a poster made by `gatescan location add` is
printed (rendered by chromium) and scanned (decoded by the gates' own decoder); Chromium with a
Pixel 5's viewport and touch opens the URL it holds, fills the form by tapping, sees "Đã ghi
nhận", and the manager sees the entry on /entries, masked, and traces it with the same card's
gate entry; an altered poster is refused; a phone that asked to be remembered and to keep its
pass sees the pass, is greeted by name next time, checks out with one tap and forgets itself
with "Không phải tôi"; the same phone again within the minute hits the rate limit (429). The
page's weight and its first paint under a slow 3G link (Chromium's network emulation over CDP)
are measured and printed."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from gatescan.testing.samples import cccd_payload
from protocol.verdicts import CredentialType, Direction
from server.locations.records import Location, Locations
from server.locations.urls import checkin_url
from server.store.site_keys import SiteKeys
from tests.support.browser import LOBBY, PageWatch, screenshot
from tests.support.browser_site import Site
from tests.support.posters import make_poster, scan_poster

# Playwright's "Pixel 5" descriptor, written out: the suite's browser fixture has no handle on
# Playwright's device list.
PIXEL_5 = {
    "user_agent": (
        "Mozilla/5.0 (Linux; Android 11; Pixel 5) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Mobile Safari/537.36"
    ),
    "viewport": {"width": 393, "height": 727},
    "screen": {"width": 393, "height": 851},
    "device_scale_factor": 2.75,
    "is_mobile": True,
    "has_touch": True,
}
# Chrome DevTools' "Slow 3G" as the brief puts it: 400 kbit/s each way, 400 ms round trips.
SLOW_3G = {
    "offline": False,
    "latency": 400,
    "downloadThroughput": 400 * 1000 / 8,
    "uploadThroughput": 400 * 1000 / 8,
}
NAME = "Hồ Thị Thu Uyên"
CCCD = "079196012468"
CARD = cccd_payload(CCCD, NAME, "12061996", "Nữ", "Quận 3, TP. Hồ Chí Minh", "01032021")


@pytest.fixture
def phone(browser: Browser) -> Iterator[tuple[BrowserContext, Page, PageWatch]]:
    context = browser.new_context(**PIXEL_5, locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh")  # type: ignore[arg-type]
    context.set_default_timeout(30_000)
    page = context.new_page()
    watch = PageWatch(page)
    try:
        yield context, page, watch
    finally:
        context.close()
    assert watch.dialogs == [] and watch.errors == [], (watch.dialogs, watch.errors)


def location(site: Site, name: str) -> Location:
    now = datetime.now(UTC)
    return Locations(site.store.engine).add(name, site_id="hq", direction=Direction.IN, now=now)


def a_phone_number() -> str:
    return "09" + "".join(secrets.choice("0123456789") for _ in range(8))


def test_a_phone_scans_the_poster_checks_in_and_the_manager_sees_the_entry_and_traces_it(
    browser: Browser,
    phone: tuple[BrowserContext, Page, PageWatch],
    manager_page: tuple[Page, PageWatch],
    site: Site,
    tmp_path: Path,
) -> None:
    _, page, _ = phone
    poster = make_poster(site, tmp_path, "Chợ Bến Thành, sạp 12")
    scanned = scan_poster(browser, poster.svg)
    assert scanned == poster.printed_url
    stall = Locations(site.store.engine).get(poster.location_id)
    assert stall is not None and scanned == checkin_url(site.url, stall)
    site.show_and_wait(LOBBY, CARD)  # the same person's card at a gate first
    page.goto(scanned)
    expect(page.locator("h1")).to_have_text("Chợ Bến Thành, sạp 12")
    assert page.evaluate("window.innerWidth") == 393
    assert page.evaluate("matchMedia('(pointer: coarse)').matches")
    page.locator("#name").tap()
    page.fill("#name", NAME)
    page.fill("#phone", a_phone_number())
    page.fill("#cccd", CCCD)
    for question in ("symptoms", "contact", "travel"):
        page.locator(f"input[name=health_{question}][value=no]").tap()
    screenshot(page, "checkin-form-pixel5")
    page.locator("button[value=in]").tap()
    expect(page.locator("h1")).to_have_text("Đã ghi nhận")
    expect(page.locator(".done")).to_contain_text("Chợ Bến Thành, sạp 12")
    screenshot(page, "checkin-recorded-pixel5")
    [entry] = [e for e in site.store.entries() if e.device_id == stall.location_id]
    assert entry.credential_type is CredentialType.SELF and entry.subject_name == NAME
    assert entry.subject_id == CCCD

    manager, _ = manager_page
    manager.goto(f"{site.url}/entries?gate={stall.location_id}")
    table = manager.locator("main")
    expect(table).to_contain_text(stall.location_id)
    expect(table).to_contain_text("H*** T*** T*** U***")
    assert NAME not in manager.content()
    manager.goto(f"{site.url}/tracing")
    manager.fill("#tr-subject", CCCD)
    manager.click("#tracing-form button")
    visits = manager.locator("#visits-table")
    expect(visits).to_contain_text(stall.location_id)
    expect(visits).to_contain_text(LOBBY)
    screenshot(manager, "checkin-traced-with-a-gate")


def test_an_altered_poster_is_refused_on_the_phone(
    phone: tuple[BrowserContext, Page, PageWatch], site: Site
) -> None:
    _, page, watch = phone
    watch.expected.add(404)
    lobby = location(site, "Quầy lễ tân")
    location_id, signature = lobby.token.split(".")
    altered = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    answer = page.goto(f"{site.url}/c/{location_id}.{altered}")
    assert answer is not None and answer.status == 404
    expect(page.locator("h1")).to_have_text("Mã QR này không còn hiệu lực")


def test_the_page_s_weight_and_first_paint_on_slow_3g(
    phone: tuple[BrowserContext, Page, PageWatch], site: Site
) -> None:
    context, page, _ = phone
    gate = location(site, "Cổng phụ")
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    cdp.send("Network.emulateNetworkConditions", SLOW_3G)
    page.goto(checkin_url(site.url, gate), wait_until="load")
    figures = page.evaluate(
        """() => new Promise(done => {
            const paints = {};
            new PerformanceObserver(list => {
                for (const p of list.getEntries()) paints[p.name] = p.startTime;
                if (!('first-contentful-paint' in paints)) return;
                const nav = performance.getEntriesByType('navigation')[0];
                done({
                    html: nav.transferSize, html_body: nav.decodedBodySize,
                    resources: performance.getEntriesByType('resource').map(
                        r => [r.name, r.transferSize, r.decodedBodySize]),
                    fp: paints['first-paint'] ?? paints['first-contentful-paint'],
                    fcp: paints['first-contentful-paint'],
                    load: nav.loadEventEnd,
                });
            }).observe({type: 'paint', buffered: true});
        })"""
    )
    total = figures["html"] + sum(size for _, size, _ in figures["resources"])
    print(
        f"\ncheck-in page on slow 3G (400 kbit/s, 400 ms): {total} B transferred "
        f"(HTML {figures['html']} B, body {figures['html_body']} B; "
        + ", ".join(f"{name.rsplit('/', 1)[-1]} {size} B" for name, size, _ in figures["resources"])
        + f"); first paint {figures['fp']:.0f} ms, first contentful paint {figures['fcp']:.0f} ms,"
        f" load {figures['load']:.0f} ms"
    )
    assert total < 30 * 1024, "a page of a few tens of KB at most"
    assert [name for name, _, _ in figures["resources"]] == [
        f"{site.url}/static/checkin/checkin.css"
    ], "one CSS file, no script"
    assert figures["fcp"] < 5000


def test_a_remembered_phone_checks_out_with_one_tap_and_keeps_its_pass(
    phone: tuple[BrowserContext, Page, PageWatch], site: Site
) -> None:
    context, page, _ = phone
    keys = SiteKeys(site.store.engine)
    if keys.active("hq") is None:  # a pass to keep needs the site's signing key
        keys.rotate("hq", datetime.now(UTC))
    kiosk = location(site, "Quầy thuốc, tầng 1")
    page.goto(checkin_url(site.url, kiosk))
    page.fill("#name", NAME)
    page.fill("#phone", a_phone_number())
    for question in ("symptoms", "contact", "travel"):
        page.locator(f"input[name=health_{question}][value=no]").tap()
    page.locator("input[name=keep]").tap()
    page.locator("input[name=remember]").tap()
    page.locator("button[value=in]").tap()
    expect(page.locator("h1")).to_have_text("Đã ghi nhận")
    code = page.locator(".kept img")
    expect(code).to_be_visible()
    assert page.evaluate("document.querySelector('.kept img').naturalWidth") > 0, "CSP: img data:"
    screenshot(page, "checkin-kept-pass-pixel5")
    [cookie] = [c for c in context.cookies() if c["name"] == "gatescan_me"]
    assert cookie["httpOnly"] and cookie["path"] == "/c/" and NAME not in cookie["value"]

    page.goto(checkin_url(site.url, kiosk))
    expect(page.locator(".hello")).to_have_text(f"Xin chào, {NAME}")
    assert page.locator("#name").count() == 0
    page.locator("button[value=out]").tap()  # one tap: no health answers to leave
    expect(page.locator("h1")).to_have_text("Đã ghi nhận")
    expect(page.locator(".done")).to_contain_text("check-out")
    mine = [e for e in site.store.entries() if e.device_id == kiosk.location_id]
    assert [e.direction for e in mine] == [Direction.IN, Direction.OUT]
    assert {e.subject_name for e in mine} == {NAME}

    page.goto(checkin_url(site.url, kiosk))
    page.locator("form.forget button").tap()
    expect(page.locator("#name")).to_be_visible()
    assert [c for c in context.cookies() if c["name"] == "gatescan_me"] == []


def test_the_same_phone_again_within_the_minute_hits_the_rate_limit(
    phone: tuple[BrowserContext, Page, PageWatch], site: Site
) -> None:
    """One check-in per phone, location and direction a minute: the second tap gets the limit's
    page (429) and nothing is stored for it."""
    _, page, watch = phone
    watch.expected.add(429)
    desk = location(site, "Quầy bảo vệ")
    number = a_phone_number()

    def check_in() -> int:
        page.goto(f"{site.url}/c/{desk.token}")
        page.fill("#name", "Trịnh Văn Bô")
        page.fill("#phone", number)
        for question in ("symptoms", "contact", "travel"):
            page.locator(f"input[name=health_{question}][value=no]").tap()
        with page.expect_response(lambda answer: answer.request.method == "POST") as posted:
            page.locator("button[value=in]").tap()
        return posted.value.status

    assert check_in() == 200
    expect(page.locator("h1")).to_have_text("Đã ghi nhận")
    assert check_in() == 429
    expect(page.locator("h1")).to_have_text("Quá nhiều lượt gửi")
    screenshot(page, "checkin-rate-limit-pixel5")
    stored = [e for e in site.store.entries() if e.device_id == desk.location_id]
    assert len(stored) == 1, "the refused one is not stored"
