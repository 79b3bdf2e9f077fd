"""The facility manager's dashboard in a real browser (Debian's chromium through Playwright),
against a real site: Mosquitto, `gatescan server`, `gatescan agent` processes replaying what a
camera would see. Every page is saved to .artifacts/screenshots/ for people to look at.

Each test shows the codes it needs and waits for them in the database, so a test also passes
alone; run in file order they tell the story of a morning at the gate.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from playwright.sync_api import Page, expect

from gatescan.testing.samples import cccd_payload
from protocol.verdicts import Direction, VerdictStatus
from server.store.alerts import AlertRows, TrackedAlert
from tests.support.browser import LOBBY, MANAGER, PageWatch, screenshot
from tests.support.browser_site import Site

LIVE_TIMEOUT_MS = 60_000  # a gate starting on a busy 2-core machine, then a 3 s poll
SITE_TZ = ZoneInfo("Asia/Ho_Chi_Minh")  # `gatescan server --site-timezone`'s default
UYEN_ID, UYEN_NAME = "079193012345", "Nguyễn Thị Thu Uyên"
DUC_ID, DUC_NAME = "001090016789", "Trần Văn Đức"
CARD_UYEN = cccd_payload(UYEN_ID, UYEN_NAME, "05061993", "Nữ", "Số 12 Phố Huế, Hà Nội", "21042021")
CARD_DUC = cccd_payload(DUC_ID, DUC_NAME, "01011990", "Nam", "Hoài Đức, Hà Nội", "15082021")
MARKUP = b"<img src=x onerror=alert(1)>"
FORMULA = '=HYPERLINK("http://example.invalid/x","bấm vào đây")'.encode()

Watched = tuple[Page, PageWatch]


def mark_page(page: Page) -> None:
    """A value that survives only as long as the page is not reloaded."""
    page.evaluate("window.gatescanTestMark = 'still the same page'")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.gatescanTestMark") == "still the same page"


def test_logging_in_leads_to_the_page_asked_for_and_the_gate_is_online(
    anonymous_page: Watched, site: Site
) -> None:
    page, _ = anonymous_page
    page.goto(f"{site.url}/entries")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fentries"))
    expect(page.locator("label[for=username]")).to_have_text("Tên đăng nhập")
    expect(page.locator("label[for=password]")).to_have_text("Mật khẩu")
    expect(page.locator("h2")).to_have_text("Đăng nhập bảng điều khiển")
    screenshot(page, "01-login")
    page.click("#login-language button[lang=en]")
    expect(page.locator("label[for=username]")).to_have_text("Username")
    page.click("#login-language button[lang=vi]")
    expect(page.locator("label[for=username]")).to_have_text("Tên đăng nhập")

    page.fill("input[name=username]", MANAGER[0])
    page.fill("input[name=password]", "not the password")
    page.click("button.primary")
    expect(page.locator(".alert-error")).to_have_text("Sai tên đăng nhập hoặc mật khẩu.")
    screenshot(page, "01-login-failed")

    page.fill("input[name=username]", MANAGER[0])
    page.fill("input[name=password]", MANAGER[1])
    page.click("button.primary")
    expect(page).to_have_url(f"{site.url}/entries")
    page.click(".mainnav a[href='/']")
    lobby = page.locator(f'#fleet-table tr[data-gate="{LOBBY}"]')
    expect(lobby).to_have_attribute("data-state", "online", timeout=LIVE_TIMEOUT_MS)
    expect(lobby.locator(".badge-online")).to_have_text("Đang hoạt động")


def test_a_killed_gate_goes_offline_and_is_flagged_without_a_reload(
    manager_page: Watched, site: Site
) -> None:
    page, _ = manager_page
    page.goto(f"{site.url}/")
    mark_page(page)
    location = "<img src=x onerror=alert(2)>"  # a label may hold markup: it is data
    dock = site.add_gate("gate-dock-02", "kho", location, "out")
    row = page.locator('#fleet-table tr[data-gate="gate-dock-02"]')
    expect(row).to_have_attribute("data-state", "online", timeout=LIVE_TIMEOUT_MS)
    expect(row.locator(".location")).to_have_text(location)
    expect(row.locator("td").nth(3)).to_have_text("Ra")

    dock.kill()
    expect(row).to_have_attribute("data-state", "offline", timeout=LIVE_TIMEOUT_MS)
    expect(row.locator(".badge-offline")).to_have_text("Ngoại tuyến")
    flagged = page.locator('#attention li[data-gate="gate-dock-02"]')
    expect(flagged).to_contain_text("ngoại tuyến", timeout=LIVE_TIMEOUT_MS)
    assert_not_reloaded(page)
    expect(page.locator("img[src=x]")).to_have_count(0)
    screenshot(page, "02-fleet")


def test_a_code_shown_at_a_gate_appears_in_the_entries_masked(
    manager_page: Watched, site: Site
) -> None:
    page, _ = manager_page
    code_shown_appears_in_the_entries_masked(page, site)
    screenshot(page, "03-entries")


def test_on_postgresql_a_code_shown_appears_in_the_entries_and_traces_its_contacts(
    postgres_manager_page: Watched, postgres_site: Site
) -> None:
    """The flow of a morning on the other backend: the collector stores to PostgreSQL, the
    entries page shows it live in the site's time, and the tracing finds the contact."""
    page, _ = postgres_manager_page
    code_shown_appears_in_the_entries_masked(page, postgres_site)
    postgres_site.show_and_wait(LOBBY, CARD_DUC)
    page.goto(f"{postgres_site.url}/tracing")
    page.fill("#tr-subject", UYEN_ID)
    page.click("#tracing-form button")
    contact = page.locator(f'#contacts-table tbody tr[data-subject="{DUC_ID}"]')
    expect(contact).to_have_count(1)
    expect(contact).to_contain_text(DUC_NAME)
    expect(contact).to_contain_text("cùng cổng")
    screenshot(page, "03-entries-postgresql")


def code_shown_appears_in_the_entries_masked(page: Page, site: Site) -> None:
    """Uyên's card held up at the lobby gate shows on the open entries page without a reload,
    masked, at the site's local time."""
    page.goto(f"{site.url}/entries")
    mark_page(page)
    site.gates[LOBBY].show(CARD_UYEN)
    row = page.locator("#entries-table tbody tr", has_text="********2345").first
    expect(row).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    assert_not_reloaded(page)
    expect(row.locator("td.name")).to_have_text("N*** T*** T*** U***")
    expect(row).to_contain_text("Đã ghi nhận")
    html = page.content()
    assert UYEN_ID not in html and UYEN_NAME not in html
    # The time is the site's (Asia/Ho_Chi_Minh), written the Vietnamese way.
    stored = site.entries_of(CARD_UYEN)[0]
    local = stored.ts.astimezone(SITE_TZ).strftime("%d/%m/%Y %H:%M:%S")
    expect(page.locator("#entries-table")).to_contain_text(local)


def test_markup_in_a_code_shows_as_text_and_runs_nothing(manager_page: Watched, site: Site) -> None:
    page, watch = manager_page
    site.show_and_wait(LOBBY, MARKUP)
    page.goto(f"{site.url}/entries")
    page.click("#unmask-form button")
    expect(page.locator(".alert-warn")).to_be_visible()
    cell = page.locator("td.codetext", has_text=MARKUP.decode())
    expect(cell.first).to_have_text(MARKUP.decode())
    expect(page.locator("img[src=x], img[onerror]")).to_have_count(0)
    screenshot(page, "04-entries-unmasked")
    assert watch.dialogs == []


def test_contact_tracing_finds_who_passed_the_same_gate_and_exports_them(
    manager_page: Watched, site: Site
) -> None:
    page, _ = manager_page
    site.show_and_wait(LOBBY, CARD_UYEN)
    site.show_and_wait(LOBBY, CARD_DUC)
    page.goto(f"{site.url}/tracing")
    page.fill("#tr-subject", UYEN_ID)
    expect(page.locator("#tr-window")).to_have_value("60")
    page.click("#tracing-form button")
    contact = page.locator(f'#contacts-table tbody tr[data-subject="{DUC_ID}"]')
    expect(contact).to_have_count(1)
    assert "/tracing?q=" in page.url and UYEN_ID not in page.url  # no ID in the history
    expect(contact).to_contain_text(DUC_NAME)
    expect(contact).to_contain_text("cùng cổng")
    expect(page.locator("#visits-table tbody tr").first).to_contain_text(LOBBY)
    screenshot(page, "05-tracing")

    with page.expect_download() as download:
        page.click("#tracing-result a[href*='format=csv']")
    assert UYEN_ID not in download.value.url and DUC_ID not in download.value.url
    raw = Path(download.value.path()).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert {(row["contact_subject_id"], row["contact_subject_name"]) for row in rows} >= {
        (DUC_ID, DUC_NAME)
    }


def test_a_viewer_sees_masked_entries_and_may_not_trace(viewer_page: Watched, site: Site) -> None:
    page, _ = viewer_page
    site.show_and_wait(LOBBY, CARD_UYEN)
    page.goto(f"{site.url}/entries")
    expect(page.locator("#entries-table")).to_contain_text("********2345")
    expect(page.locator("#unmask-form")).to_have_count(0)
    response = page.goto(f"{site.url}/tracing?subject={UYEN_ID}")
    assert response is not None and response.status == 403
    expect(page.locator(".alert-error")).to_have_text(
        "Truy vết tiếp xúc cần quyền quản lý hoặc người truy vết."
    )


def test_the_csv_export_defuses_formulas_and_keeps_vietnamese(
    manager_page: Watched, site: Site
) -> None:
    page, _ = manager_page
    site.show_and_wait(LOBBY, CARD_UYEN)
    site.show_and_wait(LOBBY, FORMULA)
    page.goto(f"{site.url}/export")
    screenshot(page, "06-export")

    unmasked = download_csv(page, "#export-csv-unmasked")
    digest = hashlib.sha256(FORMULA).hexdigest()
    formula_row = next(row for row in unmasked if row["code_sha256"] == digest)
    assert formula_row["code_text"] == "'" + FORMULA.decode()
    assert not [
        cell for row in unmasked for cell in row.values() if cell[:1] and cell[0] in "=+-@\t"
    ]
    assert {row["subject_name"] for row in unmasked if row["subject_id"] == UYEN_ID} == {UYEN_NAME}

    masked = download_csv(page, "#export-csv")
    assert {row["subject_name"] for row in masked if row["subject_id"].endswith("2345")} == {
        "N*** T*** T*** U***"
    }
    assert UYEN_ID not in {row["subject_id"] for row in masked}


def occupancy_row(site: Site, site_id: str) -> list[str]:
    """The occupancy table's row for `site_id` as the database says it must read: the site, how
    many came in and went out today (since midnight at the site; a denied showing is nobody
    passing), and how many people are inside (those whose last passage today was in)."""
    midnight = datetime.now(SITE_TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    passed = [
        entry
        for entry in site.store.entries(since=midnight)
        if entry.site_id == site_id and entry.status is not VerdictStatus.DENIED
    ]
    ins = sum(entry.direction is Direction.IN for entry in passed)
    outs = sum(entry.direction is Direction.OUT for entry in passed)
    last: dict[str, Direction] = {}
    for entry in sorted(passed, key=lambda entry: entry.ts):
        last[entry.subject_id or entry.code_sha256] = entry.direction
    inside = sum(direction is Direction.IN for direction in last.values())
    return [site_id, str(ins), str(outs), str(inside)]


def expect_occupancy(page: Page, site: Site, site_id: str) -> list[str]:
    """Wait until the occupancy page's row for `site_id` reads what the database holds, and
    return that row. The expected row is read again on every try: the page follows the database
    within one live poll, and an entry may still land meanwhile (show_and_wait returns at once
    for a code with an entry from an earlier showing, while the gate stores a new one)."""
    cells = page.locator(f'#occupancy-table tr[data-site="{site_id}"] td')
    deadline = time.monotonic() + LIVE_TIMEOUT_MS / 1000
    while True:
        expected, shown = occupancy_row(site, site_id), cells.all_inner_texts()
        if shown == expected:
            return expected
        if time.monotonic() > deadline:
            raise AssertionError(f"occupancy of {site_id}: the page shows {shown}, not {expected}")
        page.wait_for_timeout(500)


def download_csv(page: Page, link: str) -> list[dict[str, str]]:
    with page.expect_download() as download:
        page.click(link)
    raw = Path(download.value.path()).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "no byte order mark: Excel would garble Vietnamese"
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


def test_occupancy_and_the_language_switch(viewer_page: Watched, site: Site) -> None:
    page, _ = viewer_page
    site.show_and_wait(LOBBY, CARD_DUC)
    page.goto(f"{site.url}/occupancy")
    _, ins, outs, present = expect_occupancy(page, site, "hq")
    # Đức just came in; the lobby gate's direction is "in": only a self check-out at a poster
    # (tests/browser/test_checkin_page.py, on the same site when it ran first) goes out.
    self_outs = [
        entry
        for entry in site.store.entries()
        if entry.site_id == "hq" and entry.direction == "out" and entry.credential_type == "self"
    ]
    assert int(ins) >= 1 and int(outs) == len(self_outs)
    assert 1 <= int(present) <= int(ins)  # people, not passages
    expect(page.locator('table.people-inside[data-site="hq"] tbody tr').first).to_be_visible()
    expect(page.locator('.summary .stat[data-site="hq"] .value')).to_have_text(present)
    screenshot(page, "07-occupancy")

    page.goto(f"{site.url}/account")
    screenshot(page, "08-account")
    page.select_option("#a-lang", "en")
    page.click("#language-form button")
    expect(page.locator(".alert-info")).to_have_text("Saved.")
    expect(page.locator(".mainnav")).to_contain_text("Contact tracing")
    page.click(".mainnav a[href='/']")
    expect(page.locator("h1")).to_have_text("Gates")
    expect(page.locator(f'#fleet-table tr[data-gate="{LOBBY}"] .badge-online')).to_have_text(
        "Online"
    )
    screenshot(page, "09-fleet-english")
    page.click("button[name=lang][value=vi]")
    expect(page.locator("h1")).to_have_text("Cổng")


def test_an_alert_is_shown_on_the_fleet_page_and_acknowledged(
    manager_page: Watched, site: Site
) -> None:
    # The browser site runs no alert loop: its row is written as the loop would write it.
    now = datetime.now(SITE_TZ)
    device = "gate-kho-<b>02</b>"
    AlertRows(site.store.engine).save(
        [
            TrackedAlert(
                key=f"offline:{device}", kind="offline", site_id="hq", device_id=device,
                for_s=0.0, summary_en=f"gate {device} is offline",
                summary_vi=f"cổng {device} mất kết nối (quá 5 phút không có tín hiệu)",
                first_seen=now, last_seen=now, opened_at=now,
            )
        ],
        [],
    )  # fmt: skip
    page, _ = manager_page
    page.goto(f"{site.url}/")
    page.click("#alerts-badge")
    expect(page.locator("h1")).to_have_text("Cảnh báo")
    row = page.locator("#alerts-open tbody tr").first
    expect(row).to_contain_text(f"cổng {device} mất kết nối")  # the markup as text
    screenshot(page, "10-alerts")
    row.locator("button").click()
    expect(page.locator("#alerts-open tbody tr").first.locator(".badge")).to_contain_text(
        MANAGER[0]
    )
    screenshot(page, "10-alerts-acknowledged")
