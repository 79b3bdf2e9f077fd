"""A technician in a real browser (Debian's chromium) against the real site of
tests/browser/conftest.py: made with `gatescan user add --role technician`, it lands on the
fleet page, whose menu holds the fleet and the alerts alone, reads each gate's system column (a
gate past every threshold marked, its hostile throttling label shown as text), and opens the
gate's page with every reading. Saved to .artifacts/screenshots/11-fleet-system.png."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from playwright.sync_api import Page, expect

from protocol.messages import Status, Telemetry
from tests.support.browser import PageWatch, screenshot
from tests.support.browser_site import Site, add_user

TECHNICIAN = ("kythuat", "Mật-khẩu kỹ thuật 2026")
HOT_GATE = "gate-kho-03"
HOSTILE = "<img src=x onerror=alert(3)>"


@pytest.fixture(scope="module")
def technician_account(site: Site) -> tuple[str, str]:
    add_user(site.db, TECHNICIAN[0], "technician", TECHNICIAN[1], site.root / "user-add-tech.log")
    return TECHNICIAN


def _hot_gate(site: Site) -> None:
    """A gate past every threshold, stored through the real store (the collector's database)."""
    now = datetime.now(UTC)
    status = Status(state="online", ts=now, version="1.9.0", site_id="kho", location="Kho lạnh")
    site.store.record_status(HOT_GATE, status, now)
    telemetry = Telemetry.model_validate(
        {
            "ts": now,
            "uptime_s": 600.0,
            "fps": 11.0,
            "decode_ms": 31.0,
            "outbox_depth": 0,
            "clock_synced": True,
            "version": "1.9.0",
            "addresses": [{"interface": "wlan0", "address": "10.20.0.7"}],
            "wifi_signal_dbm": -81,
            "disk_free_bytes": 700 << 20,
            "disk_total_bytes": 15 << 30,
            "cpu_temp_c": 83.5,
            "throttling": ["under_voltage", "throttled", "under_voltage_occurred", HOSTILE],
            "system_uptime_s": 86400.0 + 7200.0,
            "config_hash": "3f2a9c0d11e4b6a7",
            "policy_version": 7,
            "policy_key_ids": [1],
            "list_versions": {"allow": 6, "block": 7},
        }
    )
    site.store.record_telemetry(HOT_GATE, telemetry, now)


def test_a_technician_reads_the_fleet_s_system_column_and_a_gate_s_page(
    anonymous_page: tuple[Page, PageWatch], site: Site, technician_account: tuple[str, str]
) -> None:
    _hot_gate(site)
    page, _ = anonymous_page
    page.goto(f"{site.url}/login?next=%2Fentries")
    page.fill("input[name=username]", technician_account[0])
    page.fill("input[name=password]", technician_account[1])
    page.click("button[type=submit].primary")
    expect(page).to_have_url(f"{site.url}/")  # not the entries it asked for
    # The fleet, its alerts and its gates' updates: no page of people.
    links = page.locator(".mainnav a")
    expect(links).to_have_count(3)
    hrefs = [links.nth(i).get_attribute("href") for i in range(3)]
    assert sorted(hrefs) == ["/", "/alerts", "/updates"], hrefs

    hot = page.locator(f'#fleet-table tr[data-gate="{HOT_GATE}"] td.system')
    expect(hot).to_have_attribute("data-warnings", "wifi_weak disk_low hot under_voltage throttled")
    expect(hot.locator(".wifi.warn")).to_contain_text("-81 dBm")
    expect(hot.locator(".disk.warn")).to_have_text("trống 700 MiB")
    expect(hot.locator(".temp.warn")).to_contain_text("83.5 °C")
    expect(hot.locator(".temp .badge-warn")).to_have_count(2)
    expect(page.locator("#fleet-table th", has_text="Hệ thống")).to_have_count(1)
    expect(page.locator("form.door-release")).to_have_count(0)  # the door is the manager's
    screenshot(page, "11-fleet-system")

    page.click(f'#fleet-table a[href="/gates/{HOT_GATE}"]')
    expect(page).to_have_url(f"{site.url}/gates/{HOT_GATE}")
    expect(page.locator("#system-addresses")).to_have_text("10.20.0.7 (wlan0)")
    expect(page.locator("#system-config-hash")).to_have_text("3f2a9c0d11e4b6a7")
    expect(page.locator("#system-throttling")).to_contain_text(HOSTILE)  # as text
    expect(page.locator("img[src=x]")).to_have_count(0)
    expect(page.locator("#gate-system .system-warnings li")).to_have_count(5)
    screenshot(page, "11-gate-system")
