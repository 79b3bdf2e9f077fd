"""A signed-in user changes their own password on the account page: the current one checked and
counted in the login's limit, the new one checked against the CLI's policy, other sessions
ended, the change audited, and no password ever in a page, an audit row or the log."""

from __future__ import annotations

import itertools
import logging
import re
import threading
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from server.accounts.password_policy import MIN_PASSWORD_CHARS
from server.accounts.users import USER_ROLES, Accounts, Role
from server.dashboard.app import create_web_app
from server.dashboard.password_page import CHANGED_NOTICE, MAX_PASSWORD_CHARS
from server.dashboard.settings import WebSettings
from server.dashboard.state import PASSWORD_CHANGES_PER_WINDOW, SESSION_COOKIE
from server.store.database import Store
from tests.support.waiting import wait_until
from tests.support.web import (
    FAST_HASHER,
    PASSWORD,
    Answer,
    MovableClock,
    bearer,
    log_in,
    login_form_token,
    session_csrf,
)

NEW_PASSWORD = "purple elephant marmalade"
WRONG_PASSWORD = "not my password at all"
FIELDS = ("current_password", "new_password", "new_password_again")


def change(
    client: TestClient, csrf: str | None, current: str, new: str, again: str | None = None
) -> Answer:
    form = dict(zip(FIELDS, (current, new, new if again is None else again), strict=True))
    if csrf is not None:
        form["csrf_token"] = csrf
    return client.post("/account/password", data=form)


def try_login(app: FastAPI, name: str, password: str) -> int:
    """A login from a fresh browser: its status (303 in, 401 wrong, 429 rate-limited)."""
    with TestClient(app, follow_redirects=False) as browser:
        form = {"username": name, "password": password, "csrf_token": login_form_token(browser)}
        return browser.post("/login", data=form).status_code


def password_is(app: FastAPI, name: str, password: str) -> bool:
    return app.state.web.accounts.authenticate(name, password) is not None


def assert_fields_empty(page: str) -> None:
    for name in FIELDS:
        field = re.search(rf'<input[^>]*name="{name}"[^>]*>', page)
        assert field, f"the form has no {name} field"
        assert "value=" not in field.group(0), field.group(0)


@pytest.fixture
def other_browser(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False) as browser:
        yield browser


# --- the form and a change that works ----------------------------------------------------------


def test_the_account_page_shows_the_form_with_the_csrf_token(client: TestClient) -> None:
    csrf = log_in(client, "viewer")
    page = client.get("/account")
    assert page.status_code == 200
    assert 'action="/account/password"' in page.text
    assert f'name="csrf_token" value="{csrf}"' in page.text
    assert "Đổi mật khẩu" in page.text  # Vietnamese by default
    assert_fields_empty(page.text)


def test_a_change_keeps_this_session_ends_the_others_and_swaps_the_passwords(
    app: FastAPI, client: TestClient, other_browser: TestClient
) -> None:
    csrf = log_in(client, "viewer")
    log_in(other_browser, "viewer")
    assert other_browser.get("/api/v1/me").status_code == 200
    old_cookie = client.cookies.get(SESSION_COOKIE)

    answer = change(client, csrf, PASSWORD, NEW_PASSWORD)

    assert answer.status_code == 303
    assert answer.headers["location"] == CHANGED_NOTICE
    # This browser goes on under a new session id: a stolen copy of the old cookie is dead.
    assert SESSION_COOKIE in answer.headers["set-cookie"]
    assert client.cookies.get(SESSION_COOKIE) not in (None, old_cookie)
    assert app.state.web.accounts.session(old_cookie) is None
    assert session_csrf(client) != csrf
    notice = client.get(answer.headers["location"])
    assert notice.status_code == 200  # this browser is still logged in...
    assert "Đã đổi mật khẩu" in notice.text
    assert client.get("/api/v1/me").json()["name"] == "viewer"
    assert other_browser.get("/api/v1/me").status_code == 401  # ...the other one ended
    assert try_login(app, "viewer", PASSWORD) == 401
    assert try_login(app, "viewer", NEW_PASSWORD) == 303
    assert password_is(app, "manager", PASSWORD)  # nobody else's changed


def test_the_change_is_audited_without_any_password(app: FastAPI, client: TestClient) -> None:
    csrf = log_in(client, "manager")
    assert change(client, csrf, PASSWORD, NEW_PASSWORD).status_code == 303

    rows = app.state.web.audit.rows(action="account")
    assert len(rows) == 1
    row = rows[0]
    assert (row.actor, row.subject) == ("manager", "manager")
    assert row.details["change"] == "own password"
    assert row.details["sessions_ended"] == 1  # this one, renewed under a new id
    everything = repr(app.state.web.audit.rows(limit=1000))
    assert PASSWORD not in everything
    assert NEW_PASSWORD not in everything


def test_english_users_read_the_form_and_its_errors_in_english(client: TestClient) -> None:
    csrf = log_in(client, "viewer")
    client.post("/account/language", data={"lang": "en", "csrf_token": csrf, "next": "/account"})
    assert "Change password" in client.get("/account").text
    answer = change(client, csrf, WRONG_PASSWORD, NEW_PASSWORD)
    assert answer.status_code == 400
    assert "The current password is wrong." in answer.text


# --- refusals ----------------------------------------------------------------------------------


def test_a_wrong_current_password_is_refused_and_counted_in_the_login_limit(
    app: FastAPI, client: TestClient, settings: WebSettings
) -> None:
    csrf = log_in(client, "viewer")
    for _ in range(settings.login_failures_per_user):
        answer = change(client, csrf, WRONG_PASSWORD, NEW_PASSWORD)
        assert answer.status_code == 400
        assert "Mật khẩu hiện tại không đúng." in answer.text
        assert WRONG_PASSWORD not in answer.text
        assert NEW_PASSWORD not in answer.text
        assert_fields_empty(answer.text)

    limited = change(client, csrf, PASSWORD, NEW_PASSWORD)  # even the right one now waits
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert "Nhập sai quá nhiều lần" in limited.text
    assert try_login(app, "viewer", PASSWORD) == 429  # one limit for the name, login included
    assert password_is(app, "viewer", PASSWORD)
    assert client.get("/api/v1/me").status_code == 200  # a refusal does not log anyone out


def test_the_limit_lifts_after_its_window(
    app: FastAPI, client: TestClient, settings: WebSettings, clock: MovableClock
) -> None:
    csrf = log_in(client, "viewer")
    for _ in range(settings.login_failures_per_user):
        assert change(client, csrf, WRONG_PASSWORD, NEW_PASSWORD).status_code == 400
    assert change(client, csrf, PASSWORD, NEW_PASSWORD).status_code == 429
    clock.advance(settings.login_window_s + 1)
    csrf = log_in(client, "viewer")  # the session has gone idle meanwhile
    assert change(client, csrf, PASSWORD, NEW_PASSWORD).status_code == 303
    assert password_is(app, "viewer", NEW_PASSWORD)


@pytest.mark.parametrize(
    ("current", "new", "again", "says"),
    [
        (PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "x", "không khớp"),
        (PASSWORD, "short12", "short12", f"ít nhất {MIN_PASSWORD_CHARS} ký tự"),
        (PASSWORD, PASSWORD, PASSWORD, "phải khác mật khẩu hiện tại"),
        (PASSWORD, "", "", "điền đủ cả ba ô"),
        ("", NEW_PASSWORD, NEW_PASSWORD, "điền đủ cả ba ô"),
        (PASSWORD, "y" * (MAX_PASSWORD_CHARS + 1), "y" * (MAX_PASSWORD_CHARS + 1), "dài quá"),
        (PASSWORD, "password1234", "password1234", "Mật khẩu này dễ đoán"),
    ],
    ids=["mismatch", "policy", "same-as-old", "new-missing", "current-missing", "too-long", "weak"],
)
def test_a_new_password_that_will_not_do_is_refused_with_the_reason(
    app: FastAPI, client: TestClient, current: str, new: str, again: str, says: str
) -> None:
    csrf = log_in(client, "viewer")
    answer = change(client, csrf, current, new, again)
    assert answer.status_code == 400
    assert says in answer.text
    assert 'id="password-error"' in answer.text
    for typed in {current, new, again} - {""}:
        assert typed not in answer.text
    assert_fields_empty(answer.text)
    assert password_is(app, "viewer", PASSWORD)
    assert not app.state.web.audit.rows(action="account")


def test_refusals_that_check_no_password_are_not_counted(
    app: FastAPI, client: TestClient, settings: WebSettings
) -> None:
    csrf = log_in(client, "viewer")
    for _ in range(settings.login_failures_per_user + 1):
        assert change(client, csrf, PASSWORD, NEW_PASSWORD, "typo").status_code == 400
    assert len(app.state.web.limiter) == 0
    assert change(client, csrf, PASSWORD, NEW_PASSWORD).status_code == 303


def test_a_right_current_password_with_a_weak_new_one_changes_nothing(
    app: FastAPI, client: TestClient
) -> None:
    csrf = log_in(client, "viewer")
    assert change(client, csrf, PASSWORD, "1234567").status_code == 400
    assert password_is(app, "viewer", PASSWORD)
    assert not password_is(app, "viewer", "1234567")


def test_without_the_csrf_token_the_change_is_refused(app: FastAPI, client: TestClient) -> None:
    csrf = log_in(client, "viewer")
    assert change(client, None, PASSWORD, NEW_PASSWORD).status_code == 403
    assert change(client, "forged", PASSWORD, NEW_PASSWORD).status_code == 403
    assert change(client, csrf + "x", PASSWORD, NEW_PASSWORD).status_code == 403
    assert password_is(app, "viewer", PASSWORD)
    assert not app.state.web.audit.rows(action="account")


def test_a_bearer_token_cannot_change_a_password(app: FastAPI, client: TestClient) -> None:
    for role in (Role.VIEWER, Role.ADMIN):
        form = dict(zip(FIELDS, (PASSWORD, NEW_PASSWORD, NEW_PASSWORD), strict=True))
        answer = client.post("/account/password", data=form, headers=bearer(app, role))
        assert answer.status_code == 403
        assert PASSWORD not in answer.text
    for user in USER_ROLES:
        assert password_is(app, user.label, PASSWORD)
    assert not app.state.web.audit.rows(action="account")


def test_without_a_login_the_form_redirects_to_the_login_page(client: TestClient) -> None:
    form = dict(zip(FIELDS, (PASSWORD, NEW_PASSWORD, NEW_PASSWORD), strict=True))
    form["csrf_token"] = login_form_token(client)
    answer = client.post("/account/password", data=form)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login?next=")


def test_no_password_reaches_the_log(
    app: FastAPI, client: TestClient, settings: WebSettings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        csrf = log_in(client, "viewer")
        change(client, csrf, PASSWORD, NEW_PASSWORD, "typo in the second one")
        change(client, csrf, PASSWORD, "short12")
        change(client, csrf, WRONG_PASSWORD, NEW_PASSWORD)
        assert change(client, csrf, PASSWORD, NEW_PASSWORD).status_code == 303
        csrf = session_csrf(client)  # the session was renewed, and its token with it
        for _ in range(settings.login_failures_per_user + 1):
            change(client, csrf, WRONG_PASSWORD, PASSWORD)
    assert "changed their password" in caplog.text  # the log says what happened...
    assert "wrong current password" in caplog.text
    assert "rate-limited" in caplog.text
    logged = caplog.text + repr([(r.msg, r.args) for r in caplog.records])
    for secret in (PASSWORD, NEW_PASSWORD, WRONG_PASSWORD, "short12", "typo in the second"):
        assert secret not in logged  # ...never with what was typed


# --- a busy hasher -----------------------------------------------------------------------------


class GatedHasher:
    """The real (fast) scrypt; while `gate` is shut every hash waits for it, so a test can hold
    the server's only hashing turn instead of timing a slow hash."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.running = 0
        self._lock = threading.Lock()

    def hash(self, password: str) -> str:
        self._wait()
        return FAST_HASHER.hash(password)

    def verify(self, password: str, encoded: str) -> bool:
        self._wait()
        return FAST_HASHER.verify(password, encoded)

    def _wait(self) -> None:
        with self._lock:
            self.running += 1
        try:
            assert self.gate.wait(30), "the test never opened the gate"
        finally:
            with self._lock:
                self.running -= 1


def test_a_busy_hasher_answers_503_and_counts_no_attempt(store: Store, clock: MovableClock) -> None:
    hasher = GatedHasher()
    settings = WebSettings(
        password_hashes_at_once=1, password_hashes_waiting=0, password_hash_wait_s=2
    )
    Accounts(store.engine, hasher=FAST_HASHER).add_user("viewer", Role.VIEWER, PASSWORD)
    app = create_web_app(store, settings, clock=clock, monotonic=clock.monotonic, hasher=hasher)
    with TestClient(app, follow_redirects=False) as client:
        csrf = log_in(client, "viewer")
        hasher.gate.clear()
        holder = threading.Thread(target=app.state.web.accounts.authenticate, args=("x", "y"))
        holder.start()
        try:
            wait_until(lambda: hasher.running == 1, 20, "a hash holding the only turn")
            answer = change(client, csrf, PASSWORD, NEW_PASSWORD)
        finally:
            hasher.gate.set()
            holder.join(timeout=30)
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "2"
        assert "Máy chủ đang bận" in answer.text
        assert len(app.state.web.limiter) == 0  # neither a failure nor a success
        assert password_is(app, "viewer", PASSWORD)
        assert change(client, csrf, PASSWORD, NEW_PASSWORD).status_code == 303


def test_changes_that_go_through_are_capped_per_user(app: FastAPI, client: TestClient) -> None:
    # Each change costs two scrypt hashes: a loop of them must not keep the hashing turns busy.
    log_in(client, "viewer")
    passwords = [PASSWORD] + [f"{NEW_PASSWORD} {n}" for n in range(PASSWORD_CHANGES_PER_WINDOW)]
    answer = change(client, session_csrf(client), WRONG_PASSWORD, NEW_PASSWORD)
    assert answer.status_code == 400  # refused: not counted as a change
    for old, new in itertools.pairwise(passwords):
        assert change(client, session_csrf(client), old, new).status_code == 303
    answer = change(client, session_csrf(client), passwords[-1], NEW_PASSWORD)
    assert answer.status_code == 429
    assert int(answer.headers["retry-after"]) > 0
    assert "Mật khẩu vừa được đổi nhiều lần" in answer.text
    assert password_is(app, "viewer", passwords[-1])  # the refused one changed nothing
    assert try_login(app, "viewer", passwords[-1]) == 303  # and logging in is not limited
