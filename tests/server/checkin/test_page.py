"""The self check-in page in the dashboard's app, on SQLite and PostgreSQL (issue 18): a poster's
URL opens the form, a check-in is stored as a gate's entry is and shows on the manager's pages,
in tracing and in presence; bad input, other sites, floods and a full day are refused."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import URL

from protocol.verdicts import CredentialType, Direction
from server.accounts.users import Role
from server.alerts.rules import AlertRules, find_problems
from server.alerts.task import look
from server.checkin.declaration import HEALTH_QUESTIONS
from server.clock import local_day_start
from server.locations.records import Location, Locations
from server.locations.urls import checkin_url
from server.store.database import Store
from server.store.presence import people_inside
from tests.support.web import (
    BACKENDS,
    START,
    Answer,
    MovableClock,
    bearer,
    both_backends,
    cccd_event,
    log_in,
)

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

PUBLIC_URL = "https://gates.example.vn"
NAME = "Đặng Thị Ánh Nguyệt"
CCCD = "079203012345"
PHONE = "090 123 4567"
_HIDDEN = re.compile(r'name="(csrf_token|stamp)" value="([^"]*)"')


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Path | URL:
    return both_backends(request, tmp_path)


@pytest.fixture
def lobby(store: Store) -> Location:
    return Locations(store.engine).add(
        "Quầy lễ tân", site_id="hq", direction=Direction.IN, now=START
    )


def path_of(location: Location) -> str:
    """The poster's URL, as the poster prints it, read back to its path."""
    url = checkin_url(PUBLIC_URL, location)
    assert url.startswith(PUBLIC_URL + "/c/loc-")
    return url.removeprefix(PUBLIC_URL)


def open_form(client: TestClient, path: str) -> dict[str, str]:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return dict(_HIDDEN.findall(page.text))


def check_in(
    client: TestClient,
    path: str,
    *,
    name: str = NAME,
    phone: str = PHONE,
    cccd: str = "",
    direction: str = "in",
    **extra: str,
) -> Answer:
    form = open_form(client, path)
    data = {
        **form,
        "name": name,
        "phone": phone,
        "cccd": cccd,
        "direction": direction,
        **{f"health_{q}": "no" for q in HEALTH_QUESTIONS},
        **extra,
    }
    return client.post(path, data=data)


def test_the_form_shows_the_location_and_what_is_kept(client: TestClient, lobby: Location) -> None:
    page = client.get(path_of(lobby))
    assert page.status_code == 200
    text = page.text
    assert "Quầy lễ tân" in text and "hq" in text and 'lang="vi"' in text
    assert "Thông tin được lưu" in text and "Khai báo y tế" in text
    assert "<script" not in text and "style=" not in text and "<style" not in text
    assert text.index('value="in"') < text.index('value="out"'), "the location's direction first"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    english = client.get(path_of(lobby) + "?lang=en")
    assert 'lang="en"' in english.text and "What is kept" in english.text


def test_an_unknown_forged_altered_or_disabled_poster_is_a_404_page(
    client: TestClient, store: Store, lobby: Location
) -> None:
    location_id, signature = lobby.token.split(".")
    altered = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    for bad in (f"{location_id}.{altered}", "loc-aaaaaaaaaa.AAAAAAAAAAAAAAAAAAAAAA", "x", "loc-"):
        answer = client.get(f"/c/{bad}")
        assert answer.status_code == 404 and "không còn hiệu lực" in answer.text, bad
        assert location_id not in answer.text or bad.startswith(location_id)
    good_form = open_form(client, path_of(lobby))
    Locations(store.engine).disable(lobby.location_id)
    answer = client.get(path_of(lobby))
    assert answer.status_code == 404 and "Quầy lễ tân" not in answer.text
    posted = client.post(path_of(lobby), data={**good_form, "name": NAME, "phone": PHONE})
    assert posted.status_code == 404
    assert store.count_entries() == 0


def test_a_check_in_is_an_entry_the_manager_sees_masked(
    app: FastAPI, client: TestClient, store: Store, lobby: Location
) -> None:
    answer = check_in(client, path_of(lobby), cccd=CCCD)
    assert answer.status_code == 200, answer.text
    assert "Đã ghi nhận" in answer.text and "Quầy lễ tân" in answer.text
    assert "10:00, 02/03/2026" in answer.text, "the site's local time"
    [entry] = store.entries()
    assert entry.device_id == lobby.location_id and entry.site_id == "hq"
    assert entry.credential_type is CredentialType.SELF and entry.direction is Direction.IN
    assert entry.subject_id == CCCD and entry.subject_name == NAME
    assert entry.code_text == "health=n,n,n tel=+84901234567"
    with TestClient(app, follow_redirects=False) as manager:
        log_in(manager, "manager")
        page = manager.get("/entries")
        assert page.status_code == 200
        assert "Đ*** T*** Á*** N***" in page.text and NAME not in page.text
        assert lobby.location_id in page.text and "+84901234567" not in page.text
        assert "****4567" in page.text, "the phone's last 4 digits, as a code text is masked"
        assert "Tự khai báo" in page.text and "********2345" in page.text


def test_without_an_id_number_the_subject_is_a_keyed_hash_of_the_phone(
    client: TestClient, store: Store, lobby: Location, clock: MovableClock
) -> None:
    assert check_in(client, path_of(lobby), phone="0901234567").status_code == 200
    clock.advance(120)
    assert check_in(client, path_of(lobby), phone="+84 901 234 567").status_code == 200
    first, second = store.entries()
    assert first.subject_id == second.subject_id and first.subject_id.startswith("tel-")
    assert "901234567" not in first.subject_id


def test_tracing_finds_a_check_in_with_a_gate_s_entry_of_the_same_card(
    app: FastAPI, client: TestClient, store: Store, lobby: Location, clock: MovableClock
) -> None:
    store.add_events([cccd_event(1, subject=CCCD, name=NAME, ts=START)], received_at=START)
    clock.advance(600)
    assert check_in(client, path_of(lobby), cccd=CCCD).status_code == 200
    with TestClient(app) as api:
        answer = api.get(
            f"/api/v1/people/{CCCD}/trace?window_min=60", headers=bearer(app, Role.MANAGER)
        )
    assert answer.status_code == 200, answer.text
    visits = answer.json()["visits"]
    assert sorted(visit["device_id"] for visit in visits) == sorted(["gate-1", lobby.location_id])


def test_a_check_out_counts_the_person_out(
    client: TestClient, store: Store, lobby: Location, clock: MovableClock
) -> None:
    store.add_events([cccd_event(1, subject=CCCD, name=NAME, ts=START)], received_at=START)
    since = local_day_start(START, clock_tz())
    with store.engine.connect() as conn:
        assert [p.person for p in people_inside(conn, since, "hq")] == [CCCD]
    clock.advance(60)
    out = check_in(client, path_of(lobby), cccd=CCCD, direction="out")
    assert out.status_code == 200 and "check-out" in out.text
    with store.engine.connect() as conn:
        assert list(people_inside(conn, since, "hq")) == []
    clock.advance(60)
    assert check_in(client, path_of(lobby), phone="0987654321").status_code == 200
    with store.engine.connect() as conn:
        [inside] = people_inside(conn, since, "hq")
    assert inside.credential_type == "self" and inside.person.startswith("tel-")


def clock_tz() -> ZoneInfo:
    return ZoneInfo("Asia/Ho_Chi_Minh")


def test_bad_input_is_shown_again_with_the_values_kept_and_never_as_markup(
    client: TestClient, store: Store, lobby: Location
) -> None:
    markup = '<script>alert("x")</script>'
    answer = check_in(client, path_of(lobby), name=markup, phone="12<b>3", cccd="12")
    assert answer.status_code == 400
    text = answer.text
    assert "<script>alert" not in text and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in text
    assert "12&lt;b&gt;3" in text and "<b>3" not in text
    assert "Họ tên chỉ gồm chữ cái" in text and "Số điện thoại không hợp lệ" in text
    assert "Số CCCD gồm đúng 12 chữ số" in text
    assert store.count_entries() == 0


def test_a_post_without_the_form_s_cookie_or_stamp_records_nothing(
    app: FastAPI, client: TestClient, store: Store, lobby: Location, clock: MovableClock
) -> None:
    data = {
        "name": NAME,
        "phone": PHONE,
        "direction": "in",
        **{f"health_{q}": "no" for q in HEALTH_QUESTIONS},
    }
    with TestClient(app) as elsewhere:  # another site's page posting: no cookie of ours
        assert elsewhere.post(path_of(lobby), data=data).status_code == 403
    form = open_form(client, path_of(lobby))
    unstamped = {**data, "csrf_token": form["csrf_token"]}
    assert client.post(path_of(lobby), data=unstamped).status_code == 400
    clock.advance(3 * 3600)
    late = client.post(path_of(lobby), data={**data, **form})
    assert late.status_code == 400 and "hết hạn" in late.text and NAME in late.text
    assert store.count_entries() == 0


def test_the_rate_limits_answer_429(
    app: FastAPI, client: TestClient, store: Store, lobby: Location, clock: MovableClock
) -> None:
    assert check_in(client, path_of(lobby)).status_code == 200
    again = check_in(client, path_of(lobby))
    assert again.status_code == 429 and "Quá nhiều lượt gửi" in again.text
    assert int(again.headers["retry-after"]) <= 60
    assert check_in(client, path_of(lobby), direction="out").status_code == 200
    for n in range(7):  # 10 attempts a minute from one address, accepted or not
        check_in(client, path_of(lobby), phone=f"09876543{n:02d}")
    flood = check_in(client, path_of(lobby), phone="0912345678")
    assert flood.status_code == 429
    assert store.count_entries() == 9
    clock.advance(61)
    assert check_in(client, path_of(lobby), phone="0912345678").status_code == 200


def test_the_daily_cap_refuses_more_check_ins_at_a_location(
    store: Store, lobby: Location, clock: MovableClock
) -> None:
    from server.accounts.passwords import PasswordHasher
    from server.dashboard.app import create_web_app
    from server.dashboard.settings import WebSettings

    capped = create_web_app(
        store,
        WebSettings(checkin_daily_cap=2),
        clock=clock,
        monotonic=clock.monotonic,
        hasher=PasswordHasher(n=2**12, p=1),
    )
    with TestClient(capped) as client:
        for phone in ("0901000001", "0901000002"):
            assert check_in(client, path_of(lobby), phone=phone).status_code == 200
        full = check_in(client, path_of(lobby), phone="0901000003")
        assert full.status_code == 429 and "đủ lượt khai báo" in full.text
        snapshot = look(store, clock(), 120, clock_tz())
        assert snapshot.gates == [] and store.devices() == [], "a location is not a device"
        [alert] = find_problems(snapshot, AlertRules(checkins_per_location_day=2), clock())
        assert alert.key == f"checkin_cap:{lobby.location_id}" and alert.site_id == "hq"
        other = Locations(store.engine).add(
            "Cổng sau", site_id="hq", direction=Direction.OUT, now=START
        )
        assert check_in(client, path_of(other), phone="0901000003").status_code == 200
        clock.advance(24 * 3600)
        assert check_in(client, path_of(lobby), phone="0901000003").status_code == 200


def test_nothing_personal_is_logged(
    client: TestClient, lobby: Location, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    check_in(client, path_of(lobby), cccd=CCCD)
    check_in(client, path_of(lobby), name="<x>", phone="0901234568", cccd="079203099999")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert lobby.location_id in logged
    for personal in (NAME, "Nguyệt", CCCD, "079203099999", "901234567", "1234568", "tel-"):
        assert personal not in logged, personal


def test_the_page_weighs_a_few_kilobytes(client: TestClient, lobby: Location) -> None:
    html = client.get(path_of(lobby))
    css = client.get("/static/checkin/checkin.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    weight = len(html.content) + len(css.content)
    print(f"check-in page: HTML {len(html.content)} B + CSS {len(css.content)} B = {weight} B")
    assert weight < 16 * 1024
