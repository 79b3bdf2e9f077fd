"""Pushing settings in a real browser (Debian's chromium) to the real site of
tests/browser/conftest.py: its lobby gate is a real `gatescan agent` with a config file, on the
replay camera, over a real broker and the real `gatescan server`. A manager's value out of range
is shown back on the form with its problem and nothing is sent; a good one reaches the gate,
which applies it live and answers on the page without a reload; an emptied form takes it back.
Screenshots: .artifacts/screenshots/14-settings-refused.png and 15-settings-applied.png."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from server.store.gate_commands import GateCommands
from tests.support.browser import LOBBY, PageWatch, screenshot
from tests.support.browser_site import Site
from tests.support.waiting import wait_until


def lobby_pushes(site: Site) -> list[tuple[str, str]]:
    rows = GateCommands(site.store.engine).recent(LOBBY, limit=50)
    return [(row.status, row.detail) for row in rows if row.action == "push_config"]


def test_a_manager_pushes_a_setting_the_gate_applies_live_and_the_page_shows_its_answer(
    manager_page: tuple[Page, PageWatch], site: Site
) -> None:
    page, watch = manager_page
    watch.expected.add(400)  # the refused form, shown again with its problem
    wait_until(
        lambda: any(d.device_id == LOBBY for d in site.store.devices()), 60, "the lobby gate"
    )
    page.goto(f"{site.url}/gates/{LOBBY}")
    form = page.locator("#settings-form")
    expect(form).to_be_visible()
    before = len(lobby_pushes(site))

    form.locator('[name="mqtt.telemetry_interval"]').fill("0,5")  # under its minimum of 1
    form.locator('button[type="submit"]').click()
    expect(page.locator("#settings-problems")).to_contain_text("mqtt.telemetry_interval")
    expect(page.locator('[name="mqtt.telemetry_interval"]')).to_have_value("0,5")
    screenshot(page, "14-settings-refused")
    assert len(lobby_pushes(site)) == before, "nothing was sent"

    page.locator('[name="mqtt.telemetry_interval"]').fill("2")
    page.locator('#settings-form button[type="submit"]').click()
    expect(page.locator("#command-notice")).to_be_visible()
    wait_until(
        lambda: lobby_pushes(site) and lobby_pushes(site)[0][0] == "done",
        30,
        "the gate's answer",
    )
    assert lobby_pushes(site)[0] == ("done", "applied live: mqtt.telemetry_interval")
    # The answer appears by itself (the page's live region), then the form shows the push.
    expect(page.locator("#answers-table")).to_contain_text("applied live: mqtt.telemetry_interval")
    page.reload()
    expect(page.locator('[name="mqtt.telemetry_interval"]')).to_have_value("2")
    screenshot(page, "15-settings-applied")

    # The whole push is the form: emptied, every pushed setting goes back to the file's.
    page.locator('[name="mqtt.telemetry_interval"]').fill("")
    page.locator('#settings-form button[type="submit"]').click()
    wait_until(
        lambda: len(lobby_pushes(site)) == before + 2 and lobby_pushes(site)[0][0] == "done",
        30,
        "the push taken back",
    )
    assert lobby_pushes(site)[0] == ("done", "applied live: mqtt.telemetry_interval")
