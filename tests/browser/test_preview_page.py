"""Aim and focus in a real browser (Debian's chromium) against the real site of
tests/browser/conftest.py: its lobby gate is a real `gatescan agent` on the replay camera, over
a real broker, and the real `gatescan server`. A manager starts the gate page's preview; the
gate is shown a sharp code, then the same picture under a Gaussian blur (the replay's image
replaced): the page's focus score is higher for the sharp one, its peak stays there, and its
<img> is a real JPEG. A viewer has no panel and is refused (403). No frame is stored.
Screenshots: .artifacts/screenshots/12-preview-sharp.png and 13-preview-blurred.png."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
from playwright.sync_api import Page, expect

from tests.support.browser import LOBBY, PageWatch, screenshot
from tests.support.browser_site import Site
from tests.support.waiting import wait_until

CODE = b"GATESCAN-PREVIEW-BROWSER-0001"


def show_blurred(image: Path, sigma: float) -> None:
    """The picture in front of the camera, out of focus: a real Gaussian blur of it."""
    sharp = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
    assert sharp is not None
    blurred = cv2.GaussianBlur(sharp, (0, 0), sigma)
    ok, png = cv2.imencode(".png", blurred)
    assert ok
    partial = image.with_suffix(".partial")
    partial.write_bytes(png.tobytes())
    os.replace(partial, image)


def shown(page: Page) -> tuple[int, float, float]:
    """The frame number the page shows, its focus and the peak."""
    values = page.evaluate(
        """() => {
            const img = document.querySelector("[data-preview-image]");
            const focus = document.querySelector("[data-preview-focus]").dataset.value;
            const peak = document.querySelector("[data-preview-peak]").dataset.value;
            const loaded = img.complete && img.naturalWidth > 0 && !img.hidden;
            return [loaded ? Number(img.dataset.seq) : -1, Number(focus), Number(peak)];
        }"""
    )
    return int(values[0]), float(values[1]), float(values[2])


def settled_focus(page: Page, after_seq: int) -> tuple[int, float, float]:
    """The page's focus once three more frames came after `after_seq` (the scene settled)."""
    return wait_until(
        lambda: (now := shown(page))[0] >= after_seq + 3 and now,
        30,
        f"three frames after {after_seq}",
        interval=0.2,
    )


def lobby_heard(site: Site) -> None:
    """The lobby gate's status stored (a gate's page is there only for a gate heard from)."""
    wait_until(
        lambda: any(d.device_id == LOBBY for d in site.store.devices()), 60, "the lobby gate"
    )


def test_the_preview_ranks_a_sharp_picture_above_a_blurred_one(
    manager_page: tuple[Page, PageWatch], site: Site
) -> None:
    page, _ = manager_page
    gate = site.gates[LOBBY]
    gate.show(CODE)
    lobby_heard(site)
    page.goto(f"{site.url}/gates/{LOBBY}")
    panel = page.locator("#preview")
    expect(panel).to_be_visible()
    page.click("[data-preview-start]")
    expect(page.locator("[data-preview-image]")).to_be_visible(timeout=30_000)

    started = time.monotonic()
    seq, sharp, _ = settled_focus(page, 0)
    first_frame_s = time.monotonic() - started
    expect(page.locator("[data-preview-codes]")).to_contain_text("QR")  # the code read, marked
    jpeg = page.request.get(f"{site.url}/api/v1/gates/{LOBBY}/preview.jpg")
    assert jpeg.status == 200 and jpeg.headers["content-type"] == "image/jpeg"
    body = jpeg.body()
    assert body.startswith(b"\xff\xd8") and body.endswith(b"\xff\xd9") and len(body) > 2000
    picture = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None and picture.shape[1] <= 640
    screenshot(page, "12-preview-sharp")

    show_blurred(gate.image, sigma=3.0)
    blurred_at = time.monotonic()
    seq, blurred, peak = wait_until(
        lambda: (now := shown(page))[0] > seq and now[1] < sharp / 2 and now,
        30,
        "the blurred picture's focus",
        interval=0.2,
    )
    blur_seen_s = time.monotonic() - blurred_at
    seq, blurred, peak = settled_focus(page, seq)
    screenshot(page, "13-preview-blurred")
    print(
        f"\nfocus sharp {sharp:.1f}, blurred (sigma 3) {blurred:.1f}, peak {peak:.1f}; "
        f"JPEG {len(body)} bytes, {picture.shape[1]}x{picture.shape[0]}; first frame "
        f"{first_frame_s:.2f} s after start, the blur on the page {blur_seen_s:.2f} s after it "
        f"was shown"
    )
    assert sharp > 2 * blurred
    assert peak >= sharp

    page.click("[data-preview-stop]")
    expect(page.locator("[data-preview-image]")).to_be_hidden()
    gate.show(None)

    # Never stored: not in the database (and its WAL), not in a file beside the server.
    stored = b"".join(p.read_bytes() for p in site.root.glob("collector.db*"))
    assert body[1000:1064] not in stored
    assert not [p for p in site.root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg")]
    audit = site.store.engine  # the start is an audit row naming the gate
    from server.store.audit import AuditLog

    rows = AuditLog(audit).rows(action="preview")
    assert rows and rows[0].subject == LOBBY and rows[0].site_id == "hq"


def test_a_viewer_has_no_panel_and_cannot_start_a_preview(
    viewer_page: tuple[Page, PageWatch], site: Site
) -> None:
    page, _ = viewer_page
    lobby_heard(site)
    page.goto(f"{site.url}/gates/{LOBBY}")
    expect(page.locator("h1")).to_contain_text(LOBBY)
    expect(page.locator("#preview")).to_have_count(0)
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    answer = page.request.post(
        f"{site.url}/api/v1/gates/{LOBBY}/preview", headers={"X-CSRF-Token": token}
    )
    assert answer.status == 403
    assert "csrf" not in answer.text().lower()  # refused for the role, not for the token
    assert page.request.get(f"{site.url}/api/v1/gates/{LOBBY}/preview.jpg").status == 403
