"""The pass holder's page in a real browser: the QR it draws is the pass plus the code of the
current 30 s step (read back by the gate's decoder and checked as a gate checks it), it changes
with the step, it keeps working offline, and a broken or hostile link says so."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.sync_api import Page, expect

from device.decode.backends import make_decoder
from protocol.passes import PASS_BYTES, PassBody, new_pass_id, sign_pass
from protocol.rotating_passes import (
    STEP_S,
    pass_secret,
    split_rotating,
    step_of,
    verify_rotation,
)
from protocol.verdicts import Reason
from server.holder.routes import holder_link
from tests.support.browser import PageWatch, screenshot
from tests.support.browser_site import Site

SITE_SECRET = os.urandom(32)
KEY = Ed25519PrivateKey.generate()
NAME = "Nguyễn Thị Hà"


def issued_pass(now: datetime) -> tuple[bytes, bytes]:
    body = PassBody(3, new_pass_id(), now - timedelta(hours=1), now + timedelta(days=2))
    pass_bytes = sign_pass(body, KEY).to_bytes()
    return pass_bytes, pass_secret(SITE_SECRET, body.pass_id)


def shown_code(page: Page) -> bytes:
    png = page.locator("#code").screenshot()
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    found = make_decoder("ensemble").decode(image)
    assert len(found) == 1, "the page's QR code did not read"
    return found[0].data


def test_the_page_shows_the_pass_with_the_code_of_each_step_and_works_offline(
    anonymous_page: tuple[Page, PageWatch], site: Site
) -> None:
    page, _ = anonymous_page
    now = datetime.now(UTC)
    pass_bytes, secret = issued_pass(now)
    page.clock.install(time=now)
    page.goto(holder_link(site.url, pass_bytes, secret, NAME))
    expect(page.locator("#holder-name")).to_have_text(NAME)
    expect(page.locator("#code")).to_have_attribute("data-step", str(step_of(now)))
    first = shown_code(page)
    head, tail = split_rotating(first)
    assert head == pass_bytes
    assert tail.step == step_of(now)
    assert verify_rotation(tail, secret, now) is Reason.OK
    screenshot(page, "20-holder-pass")

    # The next step draws another code; the first is refused once a minute has passed.
    page.clock.run_for(STEP_S * 1000)
    expect(page.locator("#code")).to_have_attribute("data-step", str(step_of(now) + 1))
    second = shown_code(page)
    assert second[:PASS_BYTES] == pass_bytes and second != first
    later = now + timedelta(seconds=2 * STEP_S)
    assert verify_rotation(split_rotating(first)[1], secret, later) is Reason.EXPIRED

    # Offline, the page opens again from its service worker's cache.
    page.wait_for_function(
        "navigator.serviceWorker.controller !== null || "
        "navigator.serviceWorker.ready.then(() => true)"
    )
    page.reload()
    page.context.set_offline(True)
    try:
        page.reload()
        expect(page.locator("#holder-name")).to_have_text(NAME)
        assert shown_code(page)[:PASS_BYTES] == pass_bytes
    finally:
        page.context.set_offline(False)


def test_a_broken_or_hostile_link_says_so_and_runs_nothing(
    anonymous_page: tuple[Page, PageWatch], site: Site
) -> None:
    page, watch = anonymous_page
    page.goto(f"{site.url}/pass/#v1.AAAA.BBBB")
    expect(page.locator("#message")).to_contain_text("This pass link is broken")
    pass_bytes, secret = issued_pass(datetime.now(UTC))
    hostile = "<img src=x onerror=alert(1)>"
    page.goto(holder_link(site.url, pass_bytes, secret, hostile))
    page.reload()
    expect(page.locator("#holder-name")).to_have_text(hostile)  # shown as text, never markup
    assert watch.dialogs == []


def test_the_pages_qr_encoder_makes_codes_the_gates_read_at_every_size_it_takes(
    anonymous_page: tuple[Page, PageWatch], site: Site
) -> None:
    """qr.js is ours (byte mode, ECC M, versions 1-6): each version's largest payload, random
    bytes, read back exactly by both of the gate's decoders."""
    page, _ = anonymous_page
    page.goto(f"{site.url}/pass/#v1.x.y")
    decoders = [make_decoder("pyzbar"), make_decoder("zxing")]
    for length in (1, 14, 26, 42, 62, 84, 96, 106):
        payload = os.urandom(length)
        matrix = page.evaluate("bytes => qrMatrix(Uint8Array.from(bytes))", list(payload))
        modules = np.array(matrix, dtype=np.uint8)
        image = np.where(modules > 0, 0, 255).astype(np.uint8)
        image = cv2.copyMakeBorder(image, 4, 4, 4, 4, cv2.BORDER_CONSTANT, value=255)
        image = cv2.resize(image, None, fx=6, fy=6, interpolation=cv2.INTER_NEAREST)
        for decoder in decoders:
            assert [found.data for found in decoder.decode(image)] == [payload], length
    too_long = page.evaluate(
        "() => { try { qrMatrix(new Uint8Array(107)); } catch (e) { return e.message; } }"
    )
    assert "at most 106 bytes" in too_long
