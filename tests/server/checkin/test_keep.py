"""A pass to keep and "remember me on this phone" (issue 18), on SQLite and PostgreSQL: the pass
only when asked, self-declared and signed with the site's key, read off the page's own PNG by
the gate's decoder and judged by the gate's own policy (log mode records it, access mode refuses
it); the cookie only with consent, opaque, refused when altered; one tap checks in and out,
within the page's limits; "not me" forgets."""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import URL

from device.decode.backends import make_decoder
from device.site_policy.held import HeldPolicy
from device.verdict.credentials import Credential, parse_credential
from device.verdict.policy import Policy, PolicyMode
from protocol.passes import PASS_BYTES, PassFlags, parse_pass, verify_pass
from protocol.verdicts import CredentialType, Direction, Reason, VerdictStatus
from server.checkin.declaration import HEALTH_QUESTIONS
from server.checkin.keeping import KEEP_DAYS
from server.checkin.remember import REMEMBER_COOKIE, REMEMBER_DAYS
from server.locations.records import Location, Locations
from server.store.database import Store
from server.store.site_keys import PassRegistry, SiteKeys
from server.store.site_policy import current_policy
from tests.server.checkin.test_page import CCCD, NAME, PHONE, check_in, open_form, path_of
from tests.support.web import BACKENDS, START, Answer, MovableClock, both_backends

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

_IMAGE = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
_HIDDEN = re.compile(r'name="(csrf_token|stamp)" value="([^"]*)"')


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Path | URL:
    return both_backends(request, tmp_path)


@pytest.fixture
def lobby(store: Store) -> Location:
    SiteKeys(store.engine).rotate("hq", START)
    return Locations(store.engine).add(
        "Quầy lễ tân", site_id="hq", direction=Direction.IN, now=START
    )


def shown_pass(html: str) -> bytes:
    """The pass as a gate reads it: the page's PNG through the gate's own decoder."""
    [png] = _IMAGE.findall(html)
    grey = cv2.imdecode(np.frombuffer(base64.b64decode(png), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert grey is not None
    [code] = make_decoder("auto").decode(np.asarray(grey, dtype=np.uint8))
    return code.data


def gate(store: Store, mode: PolicyMode) -> Policy:
    """A gate of site hq holding the policy the server publishes now."""
    held = HeldPolicy.of(current_policy(store.engine, "hq", START).manifest, {})
    return Policy(mode, held=lambda: held, now=lambda: START + timedelta(hours=1))


def one_tap(client: TestClient, path: str, direction: str, **extra: str) -> Answer:
    form = dict(_HIDDEN.findall(client.get(path).text))
    return client.post(path, data={**form, "remembered": "1", "direction": direction, **extra})


def test_no_pass_and_no_cookie_unless_asked(
    client: TestClient, store: Store, lobby: Location
) -> None:
    page = client.get(path_of(lobby))
    assert 'name="keep"' in page.text and 'name="remember"' in page.text
    assert not re.search(r'name="(keep|remember)"[^>]*checked', page.text), "unticked by default"
    answer = check_in(client, path_of(lobby))
    assert answer.status_code == 200
    assert "data:image/png" not in answer.text
    assert REMEMBER_COOKIE not in answer.headers.get("set-cookie", "")
    assert PassRegistry(store.engine).all() == []


def test_a_kept_pass_is_self_declared_signed_and_only_logged_at_gates(
    client: TestClient, store: Store, lobby: Location
) -> None:
    answer = check_in(client, path_of(lobby), cccd=CCCD, keep="1")
    assert answer.status_code == 200 and "Mã cá nhân của bạn" in answer.text
    assert "no-store" in answer.headers["cache-control"], "the pass is shown once, never cached"
    code = shown_pass(answer.text)
    assert len(code) == PASS_BYTES and NAME.encode() not in code and CCCD.encode() not in code
    signed = parse_pass(code)
    assert not signed.body.issued and signed.body.flags == PassFlags(0)
    keys = SiteKeys(store.engine).public_keys("hq")
    assert verify_pass(signed, keys, START) is Reason.OK
    assert signed.body.valid_until - signed.body.valid_from == timedelta(days=KEEP_DAYS)
    [row] = PassRegistry(store.engine).all("hq")
    assert row.pass_id == signed.body.pass_id_text() and row.holder_name == NAME
    assert row.issued is False and row.key_id == signed.body.key_id

    credential = parse_credential(code)
    assert isinstance(credential, Credential)
    logged = gate(store, "log").decide(credential)
    assert (logged.status, logged.reason) == (VerdictStatus.RECORDED, Reason.OK)
    assert credential.credential_type is CredentialType.PASS
    assert credential.subject_id == row.pass_id
    refused = gate(store, "access").decide(credential)
    assert (refused.status, refused.reason) == (VerdictStatus.DENIED, Reason.NOT_ALLOWED)


def test_a_site_without_a_key_offers_no_pass(client: TestClient, store: Store) -> None:
    elsewhere = Locations(store.engine).add("Kho", site_id="kho", direction=Direction.IN, now=START)
    assert 'name="keep"' not in client.get(path_of(elsewhere)).text
    answer = check_in(client, path_of(elsewhere), keep="1")
    assert answer.status_code == 200 and "chưa cấp mã cá nhân" in answer.text
    assert PassRegistry(store.engine).all() == []


def test_remember_me_sets_an_opaque_cookie_and_greets_next_time(
    client: TestClient, store: Store, lobby: Location, clock: MovableClock
) -> None:
    answer = check_in(client, path_of(lobby), cccd=CCCD, remember="1", keep="1")
    header = answer.headers["set-cookie"]
    assert header.startswith(REMEMBER_COOKIE + "=")
    lowered = header.lower()
    assert "httponly" in lowered and "samesite=lax" in lowered and "path=/c/" in lowered
    assert f"max-age={REMEMBER_DAYS * 86400}" in lowered
    value = client.cookies[REMEMBER_COOKIE]
    raw = base64.urlsafe_b64decode(value[3:] + "=" * (-len(value[3:]) % 4))
    for personal in (NAME, "Nguyệt", CCCD, "901234567", "4567"):
        assert personal not in value and personal.encode() not in raw, personal

    other = Locations(store.engine).add(
        "Cổng sau", site_id="hq", direction=Direction.OUT, now=START
    )
    clock.advance(120)
    page = client.get(path_of(other))
    assert f"Xin chào, {NAME}" in page.text and "…4567" in page.text
    assert 'name="name"' not in page.text and 'name="remembered" value="1"' in page.text
    assert "Không phải tôi" in page.text and "Mã cá nhân của bạn" in page.text
    assert 'name="keep"' not in page.text, "the kept pass is shown again, not issued again"

    out = one_tap(client, path_of(other), "out")
    assert out.status_code == 200 and "Bạn đã check-out" in out.text
    clock.advance(120)
    health = {f"health_{q}": "no" for q in HEALTH_QUESTIONS}
    missing = one_tap(client, path_of(other), "in")
    assert missing.status_code == 400
    assert "Xin chào" in missing.text
    back_in = one_tap(client, path_of(other), "in", **health)
    assert back_in.status_code == 200
    first, leaving, entering = store.entries()
    assert [e.direction for e in (first, leaving, entering)] == [
        Direction.IN,
        Direction.OUT,
        Direction.IN,
    ]
    for entry in (leaving, entering):
        assert entry.subject_id == CCCD and entry.subject_name == NAME
        assert entry.device_id == other.location_id
    assert leaving.code_text == "health=-,-,- tel=+84901234567"
    assert entering.code_text == "health=n,n,n tel=+84901234567"
    assert len(PassRegistry(store.engine).all()) == 1


def test_a_one_tap_check_in_keeps_the_rate_limit(
    client: TestClient, store: Store, lobby: Location
) -> None:
    assert check_in(client, path_of(lobby), remember="1").status_code == 200
    again = one_tap(client, path_of(lobby), "in", **{f"health_{q}": "no" for q in HEALTH_QUESTIONS})
    assert again.status_code == 429
    assert store.count_entries() == 1


def test_a_tampered_or_foreign_cookie_is_ignored(
    client: TestClient, store: Store, lobby: Location
) -> None:
    assert check_in(client, path_of(lobby), phone=PHONE, remember="1").status_code == 200
    value = client.cookies[REMEMBER_COOKIE]
    flipped = value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1]
    for bad in (flipped, "v1.AAAA", "garbage", "v1." + "A" * 2000):
        client.cookies.clear()
        client.cookies.set(REMEMBER_COOKIE, bad, path="/c/")
        page = client.get(path_of(lobby))
        assert "Xin chào" not in page.text and 'name="name"' in page.text, bad
        tapped = one_tap(client, path_of(lobby), "out")
        assert tapped.status_code == 400
    client.cookies.clear()
    client.cookies.set(REMEMBER_COOKIE, value, path="/c/")
    assert "Xin chào" in client.get(path_of(lobby)).text, "the cookie itself still works"
    elsewhere = Locations(store.engine).add("Kho", site_id="kho", direction=Direction.IN, now=START)
    assert "Xin chào" not in client.get(path_of(elsewhere)).text, "another site's cookie"
    assert store.count_entries() == 1


def test_a_cookie_older_than_its_days_is_ignored(
    client: TestClient, lobby: Location, clock: MovableClock
) -> None:
    assert check_in(client, path_of(lobby), remember="1").status_code == 200
    clock.advance(REMEMBER_DAYS * 86400 - 60)
    assert "Xin chào" in client.get(path_of(lobby)).text
    clock.advance(120)
    assert "Xin chào" not in client.get(path_of(lobby)).text


def test_not_me_forgets_the_phone(client: TestClient, store: Store, lobby: Location) -> None:
    assert check_in(client, path_of(lobby), remember="1").status_code == 200
    form = open_form(client, path_of(lobby))
    gone = client.post(
        path_of(lobby) + "/forget", data={"csrf_token": form["csrf_token"]}, follow_redirects=False
    )
    assert gone.status_code == 303 and gone.headers["location"] == path_of(lobby) + "?lang=vi"
    header = gone.headers["set-cookie"].lower()
    assert header.startswith(REMEMBER_COOKIE) and "max-age=0" in header and "path=/c/" in header
    assert REMEMBER_COOKIE not in client.cookies
    assert "Xin chào" not in client.get(path_of(lobby)).text
    assert client.post(path_of(lobby) + "/forget", data={}).status_code == 403, "CSRF as any POST"
